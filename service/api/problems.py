"""RFC 9457 problem details for every error the service returns.

Core and routers raise `service.errors.ServiceError` subclasses; handlers here turn those,
FastAPI's validation errors, Starlette's HTTP errors and anything unexpected into
`application/problem+json`. The catch-all hides
internals: a 500 says only that something failed and which request id to look for in the logs.

Rendering a problem cannot fail: what it echoes (rejected input, locations, details) is made
encodable first (lone surrogates escaped, NaN as text, anything else as its `str`), and should
that ever raise all the same, the bare problem (type, title, status) is sent. A 422 lists at most
`MAX_ERRORS` located errors and counts the rest in `errors_omitted`, so a body of 90,000 unknown
keys costs a short answer, not megabytes.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import (
    Conflict,
    Forbidden,
    HttpError,
    Infeasible,
    Internal,
    InvalidInput,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    PreconditionFailed,
    ResourceChanged,
    ServiceError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
)
from service.schemas.common import MAX_LISTED_ERRORS

log = logging.getLogger("numa_balloon")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "/problems/"
MAX_ERRORS = MAX_LISTED_ERRORS  # located errors one problem lists; the rest are counted

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
    body.update(extra)
    if errors is not None:
        body["errors"] = list(errors[:MAX_ERRORS])
        omitted = len(errors) - len(body["errors"]) + int(body.get("errors_omitted") or 0)
        body.pop("errors_omitted", None)
        if omitted > 0:
            body["errors_omitted"] = omitted
    return body


class ProblemResponse(JSONResponse):
    """`application/problem+json` whose rendering cannot raise: an error page that fails would
    turn a 4xx into a 500 and drop the client's keep-alive connection."""

    media_type = PROBLEM_JSON

    def render(self, content: Any) -> bytes:
        try:
            return _dumps(_json_safe(content))
        except Exception:
            log.exception("a problem body could not be rendered; sending it without details")
            return _dumps({k: content[k] for k in ("type", "title", "status") if k in content})


def _dumps(content: Any) -> bytes:
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str
    ).encode("utf-8")


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
    return ProblemResponse(body, status_code=status, headers=headers)


def render(error: ServiceError, instance: str | None = None) -> JSONResponse:
    """The problem response for a service error: the one place its fields become a body."""
    body = problem_body(
        error.status, error.slug, error.title, error.detail, instance, error.errors, **error.extra
    )
    return ProblemResponse(body, status_code=error.status, headers=error.headers)


def _json_safe(value: Any) -> Any:
    """Echoed input may hold NaN/inf, bytes or lone surrogates; a problem body must still be
    valid UTF-8 JSON."""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {_text(str(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _text(value: str) -> str:
    """The string itself when it is text; lone surrogates shown as their escapes (`\\udc00`)."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _short(value: Any, limit: int = 200) -> Any:
    text = repr(value)
    return value if len(text) <= limit else text[:limit] + "..."


def validation_errors(raw: Sequence[Any]) -> list[dict[str, Any]]:
    """The located errors of a validation failure, as a problem lists them."""
    out: list[dict[str, Any]] = []
    for err in raw:
        item: dict[str, Any] = {"loc": list(err.get("loc", ())), "msg": err.get("msg", "")}
        if "type" in err:
            item["type"] = err["type"]
        if "input" in err and err.get("type") != "missing":
            item["input"] = _short(jsonable_encoder(err["input"], custom_encoder={}))
        out.append(item)
    return out


# The framework's own HTTP errors (no route, method not allowed, an undecodable body), by status:
# their slug and title are the vocabulary's, written once in service.errors.
_BY_STATUS: dict[int, type[ServiceError]] = {
    kind.status: kind
    for kind in (
        ServiceError,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        NotAcceptable,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        InvalidInput,
    )
}


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return render(exc, request.url.path)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    raw = exc.errors()
    errors = validation_errors(raw[:MAX_ERRORS])  # the rest are only counted
    where = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors[:5])
    error = InvalidInput(
        f"{len(raw)} invalid field(s): {where}",
        errors=errors,
        errors_omitted=len(raw) - len(errors),
    )
    return render(error, request.url.path)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's answer to a body it cannot decode (e.g. not UTF-8): invalid input, like
        # any other undecodable JSON, so it is a 422 with a location, as the contract says.
        error = InvalidInput(
            "the body could not be decoded as JSON",
            errors=[{"loc": ["body"], "msg": "not valid UTF-8 JSON"}],
        )
        return render(error, request.url.path)
    kind = _BY_STATUS.get(exc.status_code, HttpError)
    detail = exc.detail if isinstance(exc.detail, str) else kind.title
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route matches {request.method} {request.url.path}"
    return problem_response(
        exc.status_code, kind.slug, kind.title, detail, request, headers=dict(exc.headers or {})
    )


async def _stale(request: Request, exc: Exception) -> JSONResponse:
    error = ResourceChanged("another request modified the resource first; re-read it and retry")
    return render(error, request.url.path)


async def _integrity(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IntegrityError)
    log.warning("integrity error on %s: %s", request.url.path, exc.orig)
    error = Conflict("a database constraint refused the change (a concurrent request won); retry")
    return render(error, request.url.path)


async def _operational(request: Request, exc: Exception) -> JSONResponse:
    # Deadlocks and serialization failures never get here: the unit of work retries them and
    # says 409 Contended when they persist (service/core/unit.py).
    assert isinstance(exc, OperationalError)
    log.warning("database unavailable on %s: %s", request.url.path, exc.orig)
    error = ServiceUnavailable("the database did not answer; nothing was changed")
    return render(error, request.url.path)


async def _pool(request: Request, exc: Exception) -> JSONResponse:
    error = Overloaded("no database connection became free in time; nothing was changed")
    return render(error, request.url.path)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    error = Internal("the request failed unexpectedly; nothing was changed")
    return render(error, request.url.path)


_HANDLERS: tuple[
    tuple[type[Exception], Callable[[Request, Exception], Awaitable[JSONResponse]]], ...
] = (
    (ServiceError, _service_error),
    (RequestValidationError, _validation),
    (StarletteHTTPException, _http),
    (StaleDataError, _stale),
    (IntegrityError, _integrity),
    (OperationalError, _operational),
    (PoolTimeoutError, _pool),
    (Exception, _unexpected),
)


def install_problem_handlers(app: FastAPI) -> None:
    """Every error the service returns becomes a problem: ours, the framework's, the
    database's, and (hiding internals) anything unexpected."""
    for kind, handler in _HANDLERS:
        app.add_exception_handler(kind, handler)


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
