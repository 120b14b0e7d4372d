"""Bearer tokens: admin (from settings), host agent (one per host) and guest (one per domain).

Agent and guest tokens are 256-bit random strings shown once and stored as SHA-256 digests; the
lookup is by digest and the final comparison is constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.api.deps import SessionDep, SettingsDep
from service.api.problems import Forbidden, Unauthorized
from service.db.base import utcnow
from service.db.models import Token
from service.db.tokens import revoke_tokens

Kind = Literal["admin", "agent", "guest"]
_PREFIX = {"agent": "nbh_", "guest": "nbg_"}


@dataclass(frozen=True)
class Principal:
    kind: Kind
    subject_id: str | None = None

    @property
    def actor(self) -> str:
        return self.kind if self.subject_id is None else f"{self.kind}:{self.subject_id}"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def issue_token(session: Session, kind: Literal["agent", "guest"], subject_id: str) -> str:
    """Revoke the subject's current token of this kind and issue a new one (shown once)."""
    now = utcnow()
    revoke_tokens(session, kind, subject_id)
    token = _PREFIX[kind] + secrets.token_urlsafe(32)
    session.add(Token(kind=kind, subject_id=subject_id, token_hash=digest(token), created_at=now))
    return token


bearer_scheme = HTTPBearer(
    auto_error=False,
    description="Admin token (NUMA_BALLOON_ADMIN_TOKEN), a host agent token or a guest token",
)


def _bearer(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None:
        if request.headers.get("authorization"):
            raise Unauthorized("the Authorization header must use the Bearer scheme")
        raise Unauthorized("send 'Authorization: Bearer <token>'")
    value = credentials.credentials.strip()
    if not value or len(value) > 512:
        raise Unauthorized("the bearer token is not valid")
    return value


def authenticate(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    token = _bearer(request, credentials)
    admin = settings.admin_token
    if admin is not None and hmac.compare_digest(digest(token), digest(admin.get_secret_value())):
        return Principal("admin")
    token_hash = digest(token)
    row = session.execute(
        select(Token.kind, Token.subject_id, Token.token_hash).where(
            Token.token_hash == token_hash, Token.revoked_at.is_(None)
        )
    ).first()
    if row is None or not hmac.compare_digest(row.token_hash, token_hash):
        raise Unauthorized("the bearer token is not valid (unknown, revoked or rotated)")
    kind: Kind = "agent" if row.kind == "agent" else "guest"
    return Principal(kind, row.subject_id)


PrincipalDep = Annotated[Principal, Depends(authenticate)]


async def require_admin(principal: PrincipalDep) -> Principal:
    if principal.kind != "admin":
        raise Forbidden(f"a {principal.kind} token cannot use the toolstack API")
    return principal


Admin = Annotated[Principal, Depends(require_admin)]


async def require_agent(principal: PrincipalDep, host_id: str) -> Principal:
    if principal.kind != "agent":
        raise Forbidden("only the host agent's token can use the agent API")
    if principal.subject_id != host_id:
        raise Forbidden("this agent token belongs to another host")
    return principal


Agent = Annotated[Principal, Depends(require_agent)]


async def require_guest(principal: PrincipalDep) -> Principal:
    if principal.kind != "guest":
        raise Forbidden("only a guest token can use the guest API")
    return principal


Guest = Annotated[Principal, Depends(require_guest)]
