"""RFC 9457 problem details for every error the service returns.

Core and routers raise `service.errors.ServiceError` subclasses; handlers here turn those,
FastAPI's validation errors, Starlette's HTTP errors and anything unexpected into
`application/problem+json`. The catch-all hides
internals: a 500 says only that something failed and which request id to look for in the logs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.db.pagination import BadCursor
from service.db.retry import is_retryable
from service.errors import (
    Conflict,
    Forbidden,
    Infeasible,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    ServiceError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
)

log = logging.getLogger("numa_balloon")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "/problems/"

# Re-exported for the routers: the vocabulary lives in service.errors.
__all__ = [
    "PROBLEM_JSON",
    "Conflict",
    "Forbidden",
    "Infeasible",
    "InvalidInput",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
    "install_problem_handlers",
    "problem_response",
    "render",
    "responses",
]


def problem_body(
    status: int,
    slug: str,
    title: str,
    detail: str,
    instance: str | None = None,
    errors: Sequence[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = list(errors)
    body.update(extra)
    return body


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
    errors: Sequence[dict[str, Any]] | None = None,
    **extra: Any,
) -> JSONResponse:
    instance = request.url.path if request is not None else None
    body = problem_body(status, slug, title, detail, instance, errors, **extra)
    return JSONResponse(
        _json_safe(body), status_code=status, headers=headers, media_type=PROBLEM_JSON
    )


def render(error: ServiceError, instance: str | None = None) -> JSONResponse:
    """The problem response for a service error: the one place its fields become a body."""
    body = problem_body(
        error.status, error.slug, error.title, error.detail, instance, error.errors, **error.extra
    )
    return JSONResponse(
        _json_safe(body), status_code=error.status, headers=error.headers, media_type=PROBLEM_JSON
    )


def _json_safe(value: Any) -> Any:
    """Echoed input may hold NaN/inf or bytes; a problem body must still be valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _short(value: Any, limit: int = 200) -> Any:
    text = repr(value)
    return value if len(text) <= limit else text[:limit] + "..."


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for err in exc.errors():
        item: dict[str, Any] = {"loc": list(err.get("loc", ())), "msg": err.get("msg", "")}
        if "type" in err:
            item["type"] = err["type"]
        if "input" in err and err.get("type") != "missing":
            item["input"] = _short(jsonable_encoder(err["input"], custom_encoder={}))
        out.append(item)
    return out


_STATUS_SLUGS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Missing or invalid bearer token"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "No such resource"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "The request is not valid"),
}


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _problem(request: Request, exc: ServiceError) -> JSONResponse:
        return render(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc)
        where = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors[:5])
        return problem_response(
            422,
            "validation-error",
            "The request is not valid",
            f"{len(errors)} invalid field(s): {where}",
            request,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot decode (e.g. not UTF-8): invalid input, like
            # any other undecodable JSON, so it is a 422 with a location, as the contract says.
            return problem_response(
                422,
                "validation-error",
                "The request is not valid",
                "the body could not be decoded as JSON",
                request,
                errors=[{"loc": ["body"], "msg": "not valid UTF-8 JSON"}],
            )
        slug, title = _STATUS_SLUGS.get(exc.status_code, ("http-error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route matches {request.method} {request.url.path}"
        return problem_response(
            exc.status_code, slug, title, detail, request, headers=dict(exc.headers or {})
        )

    @app.exception_handler(BadCursor)
    async def _cursor(request: Request, exc: BadCursor) -> JSONResponse:
        return problem_response(
            422,
            "validation-error",
            "The request is not valid",
            str(exc),
            request,
            errors=[{"loc": ["query", "cursor"], "msg": str(exc)}],
        )

    @app.exception_handler(StaleDataError)
    async def _stale(request: Request, exc: StaleDataError) -> JSONResponse:
        return problem_response(
            412,
            "precondition-failed",
            "The resource changed while this request ran",
            "another request modified the resource first; re-read it and retry",
            request,
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        log.warning("integrity error on %s: %s", request.url.path, exc.orig)
        return problem_response(
            409,
            "conflict",
            "The request conflicts with the current state",
            "a database constraint refused the change (a concurrent request won); retry",
            request,
        )

    @app.exception_handler(OperationalError)
    async def _operational(request: Request, exc: OperationalError) -> JSONResponse:
        if is_retryable(exc):  # still colliding after the retries: the client may try again
            return problem_response(
                409,
                "conflict",
                "The request conflicts with concurrent requests",
                "concurrent requests on the same hosts kept colliding; nothing was changed, retry",
                request,
                headers={"Retry-After": "1"},
            )
        log.warning("database unavailable on %s: %s", request.url.path, exc.orig)
        return problem_response(
            503,
            "unavailable",
            "The database is unavailable; retry later",
            "the database did not answer; nothing was changed",
            request,
            headers={"Retry-After": "2"},
        )

    @app.exception_handler(PoolTimeoutError)
    async def _pool(request: Request, exc: PoolTimeoutError) -> JSONResponse:
        return problem_response(
            503,
            "unavailable",
            "The service is overloaded; retry later",
            "no database connection became free in time; nothing was changed",
            request,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            500,
            "internal",
            "Internal error",
            "the request failed unexpectedly; nothing was changed",
            request,
        )


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": title,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for status, title in [
        (401, "Missing or invalid bearer token"),
        (403, "Token of the wrong kind, or for another host or domain"),
        (404, "Unknown id"),
        (409, "Conflict, or not enough memory (with max_feasible_mib)"),
        (412, "If-Match does not match the current version"),
        (413, "Request body too large"),
        (422, "Invalid input, with the location of every bad field"),
        (429, "Over a rate limit: retry after Retry-After seconds"),
    ]
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The problem responses a route documents, so clients and fuzzers know them. A route that
    authenticates (401) may also be rate limited (429: service/api/ratelimit.py)."""
    wanted = set(statuses) | ({429} if 401 in statuses else set())
    return {s: PROBLEM_RESPONSES[s] for s in sorted(wanted)}
