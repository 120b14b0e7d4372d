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

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from service.api.auth import route_principal
from service.api.filters import reject_unknown_query
from service.core.credentials import Principal

Handler = Callable[[Request], Awaitable[Response]]
M = TypeVar("M", bound=BaseModel)


def lean_route(handler: Handler) -> type[APIRoute]:
    """An APIRoute class whose requests `handler` serves (the endpoint only documents it)."""

    class LeanRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Any]:
            return handler

    return LeanRoute


async def principal_for(request: Request) -> Principal:
    """What `auth.authorize` does for a FastAPI route: the middleware's principal, checked
    against the role table for this route (fails closed without the middleware), and the
    app-wide refusal of unknown query parameters."""
    await reject_unknown_query(request)
    return route_principal(request)


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
