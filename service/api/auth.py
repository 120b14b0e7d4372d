"""Bearer tokens and the principals they name: the admin bootstrap token, API keys, host agents,
guests.

The principal is resolved by the `Authentication` middleware (service/api/authentication.py)
before the request body is read; routes then only check it against the role table
(service/api/authz.py) through the `Caller` dependency. Tokens are resolved to principals in
`service.core.credentials`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.authz import access_for, role_allows
from service.core.credentials import ADMIN, Principal, is_admin
from service.errors import Forbidden, Unauthorized
from service.settings import Settings

__all__ = [
    "ADMIN",
    "Admin",
    "Agent",
    "Caller",
    "Guest",
    "Principal",
    "authorize",
    "bearer_scheme",
    "check_access",
    "is_admin",
    "parse_bearer",
]
MAX_TOKEN_CHARS = 512


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
    return route_principal(request)


def route_principal(request: Request) -> Principal:
    """The middleware's principal, allowed for the route the request was routed to (the body of
    `authorize`, for routes served without FastAPI's dependencies: `service.api.lean`)."""
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
