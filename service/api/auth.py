"""Bearer tokens and the principals they name: the admin bootstrap token, API keys, host agents,
guests.

The principal is resolved by the `Authentication` middleware (service/api/authentication.py)
before the request body is read; routes then only check it against the role table
(service/api/authz.py) through the `Caller` dependency. Agent and guest tokens are 256-bit random
strings shown once and stored as SHA-256 digests, like API keys; the admin token comes from the
settings, is compared in constant time and never touches the database.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.api.authz import access_for, role_allows
from service.core.api_keys import KEY_PREFIX, resolve_key
from service.db.models import Token
from service.db.tokens import TOKEN_PREFIX, digest
from service.errors import Forbidden, Unauthorized
from service.schemas.api_keys import Role
from service.settings import Settings

Kind = Literal["admin", "key", "agent", "guest"]
MAX_TOKEN_CHARS = 512


@dataclass(frozen=True)
class Principal:
    """Who is calling. `role` is set for the admin token ("admin") and for API keys."""

    kind: Kind
    subject_id: str | None = None  # the host (agent), the domain (guest) or the key
    name: str | None = None  # the key's name
    role: Role | None = None

    @property
    def actor(self) -> str:
        """How the audit log names the caller: `admin`, `key:<name>`, `agent:<host id>`..."""
        if self.kind == "admin":
            return "admin"
        if self.kind == "key":
            return f"key:{self.name}"
        return f"{self.kind}:{self.subject_id}"

    @property
    def metrics_label(self) -> str:
        """Bounded cardinality: keys by name (few), agents and guests by kind (many)."""
        return self.actor if self.kind in ("admin", "key") else self.kind


ADMIN = Principal("admin", role="admin")


# Documents the scheme in OpenAPI (the Authorize button); the middleware does the work.
bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An API key (`nbk_...`), the admin bootstrap token (NUMA_BALLOON_ADMIN_TOKEN), "
    "a host agent token (`nbh_...`) or a guest token (`nbg_...`)",
)


def parse_bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer` header; None without one; 401 when malformed."""
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthorized("the Authorization header must use the Bearer scheme")
    value = value.strip()
    if not value or len(value) > MAX_TOKEN_CHARS:
        raise Unauthorized("the bearer token is not valid")
    return value


def is_admin(settings: Settings, token: str) -> bool:
    """Constant time, no database: digests of equal length compared with compare_digest."""
    admin = settings.admin_token
    return admin is not None and hmac.compare_digest(
        digest(token), digest(admin.get_secret_value())
    )


def resolve(session: Session, token: str, now: datetime) -> Principal:
    """The principal a non-admin token names, in one indexed query by digest; else 401."""
    if token.startswith(KEY_PREFIX):
        key = resolve_key(session, token, now)
        return Principal("key", key.id, key.name, key.role)
    if not token.startswith(tuple(TOKEN_PREFIX.values())):
        raise Unauthorized("the bearer token is not valid")
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


def check_access(
    principal: Principal,
    operation: str,
    path_template: str,
    path_params: dict[str, str],
    settings: Settings,
) -> None:
    """Forbidden unless the role table lets this principal call this operation."""
    access = access_for(operation, path_template, settings)
    if access == "public":
        return
    if access == "agent":
        if principal.kind != "agent":
            raise Forbidden("only the host agent's token can use the agent API")
        if principal.subject_id != path_params.get("host_id"):
            raise Forbidden("this agent token belongs to another host")
        return
    if access == "guest":
        if principal.kind != "guest":
            raise Forbidden("only a guest token can use the guest API")
        return
    if principal.role is None:
        raise Forbidden(f"a {principal.kind} token cannot use the toolstack API")
    if not role_allows(principal.role, operation):
        raise Forbidden(f"the {principal.role} role may not call {operation}")


async def authorize(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
) -> Principal:
    """Route dependency: the middleware's principal, checked against the role table again for
    the route actually selected (defence in depth: fails closed without the middleware)."""
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    if principal is None:
        raise Unauthorized("send 'Authorization: Bearer <token>'")
    route = request.scope.get("route")
    operation = getattr(route, "name", "")
    template = str(getattr(route, "path_format", None) or getattr(route, "path", ""))
    params = {k: str(v) for k, v in request.path_params.items()}
    check_access(principal, operation, template, params, request.app.state.settings)
    return principal


# One dependency for every authenticated route; the old names stay so that routes written before
# roles (and on other branches) keep compiling, and all of them now check the role table.
Caller = Annotated[Principal, Depends(authorize)]
Admin = Caller
Agent = Caller
Guest = Caller
