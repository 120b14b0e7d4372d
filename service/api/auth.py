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
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.api.deps import SessionDep, SettingsDep
from service.api.problems import Forbidden, Unauthorized
from service.db.base import utcnow
from service.db.models import Token
from service.db.tokens import revoke_tokens
from service.settings import Settings

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


def bearer_token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None:
        if request.headers.get("authorization"):
            raise Unauthorized("the Authorization header must use the Bearer scheme")
        raise Unauthorized("send 'Authorization: Bearer <token>'")
    value = credentials.credentials.strip()
    if not value or len(value) > 512:
        raise Unauthorized("the bearer token is not valid")
    return value


def is_admin(settings: Settings, token: str) -> bool:
    admin = settings.admin_token
    return admin is not None and hmac.compare_digest(
        digest(token), digest(admin.get_secret_value())
    )


def principal_for(session: Session, settings: Settings, token: str) -> Principal:
    """The principal a bearer token names; raises Unauthorized when it names none."""
    if is_admin(settings, token):
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


def _lookup(request: Request, settings: Settings, token: str) -> Principal:
    # A session of its own, outside the DB gate: only the rare agent or guest token on an admin
    # route gets here, and the request holds no other session.
    with request.app.state.read_sessionmaker() as session:
        return principal_for(session, settings, token)


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


async def require_admin(
    request: Request, settings: SettingsDep, credentials: Credentials
) -> Principal:
    """On the event loop: the admin token needs no database, so a toolstack route pays no thread
    hop and no connection for it. Another token is looked up only to tell 403 from 401."""
    token = bearer_token(request, credentials)
    if is_admin(settings, token):
        return Principal("admin")
    principal = await run_in_threadpool(_lookup, request, settings, token)
    raise Forbidden(f"a {principal.kind} token cannot use the toolstack API")


Admin = Annotated[Principal, Depends(require_admin)]


def authenticate(
    request: Request, session: SessionDep, settings: SettingsDep, credentials: Credentials
) -> Principal:
    """Agent and guest routes: the lookup shares the request's session."""
    return principal_for(session, settings, bearer_token(request, credentials))


PrincipalDep = Annotated[Principal, Depends(authenticate)]


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
