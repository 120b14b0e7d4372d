"""Lean routes: a route declared to FastAPI as usual (OpenAPI, the route table, authorization by
path, the middleware stack) but served by a plain Starlette handler.

Why (issue 25): an agent's lease renewal is one statement, and FastAPI's per-request machinery
around it (solving the dependency tree, validating the body through the endpoint's signature,
serializing the answer again) cost more than the statement. A lean handler does the same steps
by hand, in the same order and with the same errors: the query refusal of every route, the
principal the Authentication middleware put in the scope checked against the role table again
(`check_access`), the body through the same pydantic model (its errors as FastAPI's, located
under "body"), one hop to the thread pool for the core operation, the model serialized once.
Errors raise the same `service.errors` kinds, so the app's problem+json handlers answer them;
the middlewares (forwarded headers, metrics, security headers, authentication, limits) wrap a
lean route exactly as any other.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi._compat.v2 import get_missing_field_error
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.auth import route_principal
from service.api.filters import reject_unknown_query
from service.api.middleware import PARSED_BODY
from service.core.credentials import Principal

Handler = Callable[[Request], Awaitable[Response]]
M = TypeVar("M", bound=BaseModel)
E = TypeVar("E", bound=Callable[..., Any])


def lean_route(handler: Handler, *, plain_lookup: bool = False) -> type[APIRoute]:
    """An APIRoute class whose requests `handler` serves (the endpoint only documents it).
    `plain_lookup`: the Authentication middleware looks an agent or guest token up on a plain
    connection (`credentials.lookup_plain`: not through the engine, so its statement is not
    seen by the engine's events either)."""

    class LeanRoute(APIRoute):
        lean_handler = staticmethod(handler)
        lean_plain_lookup = plain_lookup

        def get_route_handler(self) -> Callable[[Request], Any]:
            return handler

    return LeanRoute


def lean_endpoint(
    router: APIRouter,
    path: str,
    handler: Handler,
    *,
    method: str,
    plain_lookup: bool = False,
    **route: Any,
) -> Callable[[E], E]:
    """Register the decorated endpoint as the declaration of a lean route (its parameters, body
    and answer, for OpenAPI and the route table) that `handler` serves; `route` are
    `add_api_route`'s documentation arguments. The endpoint's body never runs."""

    def register(endpoint: E) -> E:
        router.add_api_route(
            path,
            endpoint,
            methods=[method],
            route_class_override=lean_route(handler, plain_lookup=plain_lookup),
            **route,
        )
        return endpoint

    return register


def lean_handler(route: object) -> Handler | None:
    """The handler of a lean route (None for any other route)."""
    handler: Handler | None = getattr(route, "lean_handler", None)
    return handler


# Where the Authentication middleware leaves a lean route it matched, for `LeanRoutes`.
LEAN_SCOPE_KEY = "numa_balloon.lean"


@dataclass(frozen=True, slots=True)
class LeanMatch:
    route: Any  # the router's route object
    path_params: dict[str, str]  # as the route's regex matched them (not converted yet)
    handler: Handler


class LeanRoutes:
    """The innermost middleware: a request the Authentication middleware matched to a lean
    route (it found the route already, by the same rules as the router) is served here, without
    the router's second search through every route (a tenth of a lease renewal's CPU). The
    scope gets what the router would have put there (the route, its path parameters, its
    endpoint); the app's own exception handlers answer its errors, as below the router."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._guarded: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found: LeanMatch | None = scope.get(LEAN_SCOPE_KEY)
        if found is None:
            await self.app(scope, receive, send)
            return
        route = found.route
        convertors = getattr(route, "param_convertors", {})
        scope["route"] = route
        scope["endpoint"] = getattr(route, "endpoint", None)
        scope["path_params"] = {
            k: convertors[k].convert(v) if k in convertors else v
            for k, v in found.path_params.items()
        }
        if self._guarded is None:
            handlers = dict(scope["app"].exception_handlers)
            handlers.pop(Exception, None)  # the outermost ServerErrorMiddleware's, as usual
            handlers.pop(500, None)
            self._guarded = ExceptionMiddleware(_serve, handlers=handlers)
        await self._guarded(scope, receive, send)


async def _serve(scope: Scope, receive: Receive, send: Send) -> None:
    found: LeanMatch = scope[LEAN_SCOPE_KEY]
    response = await found.handler(Request(scope, receive, send))
    await response(scope, receive, send)


async def principal_for(request: Request) -> Principal:
    """What `auth.authorize` does for a FastAPI route: the middleware's principal, checked
    against the role table for this route (fails closed without the middleware), and the
    app-wide refusal of unknown query parameters."""
    await reject_unknown_query(request)
    return route_principal(request)


async def body_and_errors(request: Request) -> tuple[Any, list[Any]]:
    """The JSON body validated by the route's declared body field, as FastAPI does it (Python
    mode on the parsed value; a missing body, and every misfit, located under "body"), with the
    errors rather than raising them, for a handler that reports them beside its parameters'.
    The value RequestLimits parsed is reused: parsing a batch report twice was a tenth of it."""
    raw = await request.body()
    if not raw:
        return None, [get_missing_field_error(loc=("body",))]
    value = request.scope.get(PARSED_BODY, _UNPARSED)
    if value is _UNPARSED:
        value = json.loads(raw)  # RequestLimits refused anything that is not JSON
    field = request.scope["route"].body_field
    out, errors = field.validate(value, {}, loc=("body",))
    return (None, list(errors)) if errors else (out, [])


async def required_body(request: Request) -> Any:
    """`body_and_errors`, its errors the 422 FastAPI gives."""
    out, errors = await body_and_errors(request)
    if errors:
        raise RequestValidationError(errors, body=request.scope.get(PARSED_BODY))
    return out


def parameter(
    adapter: TypeAdapter[Any], raw: str | None, loc: tuple[str, str], errors: list[Any]
) -> Any:
    """`raw` validated as FastAPI validates a path, query or header parameter (its errors, with
    their locations, collected in `errors`); None when absent."""
    if raw is None:
        return None
    try:
        return adapter.validate_python(raw)
    except ValidationError as exc:
        errors += [{**e, "loc": loc} for e in exc.errors(include_url=False)]
        return None


_UNPARSED = object()


async def optional_body(request: Request, model: type[M]) -> M | None:
    """The JSON body as `model`, None when there is none (or it is `null`); a body that does not
    fit is the 422 FastAPI gives, located under "body". (RequestLimits has already refused a
    body too large, not JSON, too deep or with duplicate keys.)"""
    raw = await request.body()
    if not raw.strip() or raw.strip() == b"null":
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [
            {**{k: v for k, v in e.items() if k != "url"}, "loc": ("body", *e["loc"])}
            for e in exc.errors()
        ]
        raise RequestValidationError(errors, body=raw) from None
