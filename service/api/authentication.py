"""Authentication and authorization before anything reads the request body.

A pure ASGI middleware, outside the body limits: it finds the operation from the method and the
path alone, resolves the bearer token (or the /ui session cookie) to a principal and checks it
against the role table, so that an unauthenticated request to an authenticated route gets its 401
(a token of the wrong kind or role its 403) without one byte of its body being received, let
alone parsed. Only then does the request go on, with the principal in `scope["state"]` for the
routes (`service.api.auth.Caller`) and the metrics.

Cost before authentication: a regex match per route (linear in the path), a SHA-256 of the token
and, for a token of a known kind other than the admin token, one indexed query by digest in the
thread pool. Failed authentications (a malformed, unknown, revoked or expired credential) are
counted per client address (service/api/forwarded.py says which address that is): past the limit
a failing credential gets 429 instead of 401, a valid one still gets through. Each API key has a
request rate limit.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.auth import ADMIN, Principal, check_access, is_admin, parse_bearer
from service.api.authz import access_for
from service.api.forwarded import client_address
from service.api.lean import LEAN_SCOPE_KEY, Handler, LeanMatch, lean_handler
from service.api.problems import render
from service.api.ratelimit import Limits, retry_after
from service.api.session import UI_PREFIX, session_principal, wants_html
from service.api.ui import rejection_page
from service.core import credentials
from service.errors import ServiceError, ServiceUnavailable, TooManyRequests, Unauthorized
from service.settings import Settings


@dataclass(frozen=True)
class Operation:
    name: str
    path_template: str
    methods: frozenset[str] | None  # None: any method (a mount)
    regex: re.Pattern[str]
    route: Any = None  # the router's route object
    lean: Handler | None = None  # a lean route's handler (`api/lean.py`)


# Routes are indexed by the first two segments of their template when both are literal (every
# API route: `/v1/hosts/...`); a path is matched against its key's routes and the others only.
_KEY_SEGMENTS = 2


def _key(path: str) -> tuple[str, ...] | None:
    parts = path.split("/", _KEY_SEGMENTS + 1)[1 : _KEY_SEGMENTS + 1]
    if len(parts) < _KEY_SEGMENTS or any("{" in p for p in parts):
        return None
    return tuple(parts)


@dataclass(frozen=True)
class RouteTable:
    """The routes in the router's order, and the same order cut down by path prefix: a route
    whose template starts with two literal segments can only match paths that start with them,
    so a request is matched against a few routes, not all (the router's linear scan of every
    route's regex was a tenth of a lease renewal's CPU, counting both of them)."""

    operations: list[Operation]
    by_key: dict[tuple[str, ...], list[Operation]]
    unkeyed: list[Operation]

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    def candidates(self, path: str) -> list[Operation]:
        key = _key(path)
        return self.unkeyed if key is None else self.by_key.get(key, self.unkeyed)


def index(operations: list[Operation]) -> RouteTable:
    keys = [_key(op.path_template) for op in operations]
    by_key = {
        k: [op for op, kk in zip(operations, keys, strict=True) if kk in (k, None)]
        for k in set(keys)
        if k is not None
    }
    unkeyed = [op for op, k in zip(operations, keys, strict=True) if k is None]
    return RouteTable(operations, by_key, unkeyed)


def route_table(app: FastAPI) -> RouteTable:
    """Every route of the app with its operation id, in the router's order."""
    out = []
    for ctx in iter_route_contexts(app.routes):
        regex = getattr(ctx, "path_regex", None)
        template = getattr(ctx, "path_format", None) or getattr(ctx, "path", None)
        if regex is None or template is None:
            continue
        methods = getattr(ctx, "methods", None)
        route = getattr(ctx, "original_route", None)
        out.append(
            Operation(
                str(ctx.name or template),
                template,
                frozenset(methods) if methods else None,
                regex,
                route,
                lean_handler(route),
            )
        )
    return index(out)


def match(table: RouteTable, method: str, path: str) -> tuple[Operation | None, dict[str, str]]:
    """The operation a request names, as the router will pick it; None when none matches its
    method (the router then answers 404 or 405). HEAD is the GET of the same path."""
    for op in table.candidates(path):
        found = op.regex.match(path)
        if found is None:
            continue
        if op.methods is None or method in op.methods or (method == "HEAD" and "GET" in op.methods):
            return op, found.groupdict()
    return None, {}


class Authentication:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._table: RouteTable | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fastapi_app: FastAPI = scope["app"]
        settings: Settings = fastapi_app.state.settings
        limits: Limits = fastapi_app.state.limits
        if self._table is None:  # routes are all registered by the first request
            self._table = route_table(fastapi_app)
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        op, params = match(self._table, scope["method"], path)
        template = op.path_template if op is not None else path
        if op is not None and access_for(op.name, template, settings) == "public":
            await self.app(scope, receive, send)
            return
        plain = op is not None and getattr(op.route, "lean_plain_lookup", False)
        try:
            principal = await self._authenticate(scope, settings, limits, plain)
            scope.setdefault("state", {})["principal"] = principal  # for routes and metrics
            if op is not None:
                check_access(principal, op.name, template, params, settings)
            if principal.kind == "key" and principal.subject_id is not None:
                wait = limits.per_key.hit(principal.subject_id)
                if wait > 0:
                    raise TooManyRequests(
                        f"key {principal.name!r} is over its request rate "
                        f"({settings.key_rate_per_s:g}/s per replica)",
                        retry_after(wait),
                    )
        except ServiceError as exc:
            await _reject(scope, send, exc)
            return
        if op is not None and op.lean is not None:
            scope[LEAN_SCOPE_KEY] = LeanMatch(op.route, params, op.lean)
        await self.app(scope, receive, send)

    async def _authenticate(
        self, scope: Scope, settings: Settings, limits: Limits, plain: bool = False
    ) -> Principal:
        headers = Headers(scope=scope)
        try:
            token = parse_bearer(headers.get("authorization"))
        except Unauthorized as exc:
            raise limits.failed_authentication(client_address(scope), exc) from None
        if token is None and scope["path"].startswith(UI_PREFIX):
            cookie_principal = await session_principal(scope, headers, settings)
            if cookie_principal is not None:
                return cookie_principal
        if token is None:  # no credential at all: nothing failed, nothing is counted
            raise Unauthorized("send 'Authorization: Bearer <token>'")
        if is_admin(settings, token):
            return ADMIN
        try:
            # A lookup session of its own (the route has not opened its unit of work yet); the
            # app's clock, which tests replace with a fake one.
            # A lean route's agent or guest token: on a plain connection (`lookup_plain`).
            state = scope["app"].state
            found = await credentials.lookup_plain(state.db, token) if plain else None
            if found is not None:
                return found
            return await run_in_threadpool(credentials.lookup, state.db, token, state.clock())
        except Unauthorized as exc:
            raise limits.failed_authentication(client_address(scope), exc) from None
        except SQLAlchemyError as exc:  # outside the app's handlers: say 503 here
            raise ServiceUnavailable(f"the database did not answer ({type(exc).__name__})") from exc


async def _reject(scope: Scope, send: Send, exc: ServiceError) -> None:
    """Answer without reading the body; the connection stays usable (the server drains it)."""
    headers = Headers(scope=scope)
    if scope["path"].startswith(UI_PREFIX) and wants_html(headers):
        response: Response = rejection_page(exc, headers)
    else:
        response = render(exc, scope["path"])

    async def no_body() -> Message:
        return {"type": "http.disconnect"}

    await response(scope, no_body, send)
