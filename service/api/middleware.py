"""ASGI middleware: request limits (body size, media type, JSON depth) and Prometheus metrics.

Limits are enforced before FastAPI parses anything, so a 50 MB body or a 100,000-deep JSON array
costs a bounded, linear read and a clean 413/415/422 instead of memory, a RecursionError or a
stalled event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.body_checks import BodyIssue, check_json_body
from service.api.problems import render
from service.errors import (
    InvalidInput,
    MethodNotAllowed,
    PayloadTooLarge,
    ServiceError,
    UnsupportedMediaType,
)

_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
# The body an unauthenticated caller may send (only public routes get one: the sign-in form, a
# key of at most 512 characters). Nothing parses it as JSON.
ANONYMOUS_MAX_BODY_BYTES = 4096
# The JSON value of a body these checks parsed, for a lean route to validate without parsing
# the body again (`service.api.lean.required_body`).
PARSED_BODY = "numa_balloon.parsed_body"
# Bodies larger than this are checked in a worker thread, so the event loop keeps answering.
_OFFLOAD_BYTES = 64 * 1024


def _is_json(content_type: bytes | None) -> bool:
    media = (content_type or b"").split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


def _read_as_json(content_type: bytes | None) -> bool:
    """Whether FastAPI would parse the body as JSON: JSON media types, and no media type at all."""
    return content_type is None or _is_json(content_type)


class RequestLimits:
    """Body size, media type, nesting depth and string checks, all before FastAPI parses the body.

    Every check is linear in the bytes received. It runs inside the authentication middleware, so
    an unauthenticated request is refused with 401 before its body is even read; a request that
    reaches a public route without a principal may send `ANONYMOUS_MAX_BODY_BYTES`, never parsed.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_json_depth: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _BODYLESS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        known = scope.get("state", {}).get("principal") is not None
        limit = self.max_body_bytes if known else min(self.max_body_bytes, ANONYMOUS_MAX_BODY_BYTES)
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(scope, send, _too_large(limit))
            return
        body = await self._read(receive, limit)
        if body is None:
            return
        if isinstance(body, ServiceError):
            await _refuse(scope, send, body)
            return
        problem = await self._check(scope, headers.get(b"content-type"), body) if known else None
        if problem is not None:
            await _refuse(scope, send, problem)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive, limit: int) -> bytes | ServiceError | None:
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return _too_large(limit)
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _check(
        self, scope: Scope, content_type: bytes | None, body: bytes
    ) -> ServiceError | None:
        if not body:
            return None
        if scope["path"].startswith("/v1/") and not _is_json(content_type):
            shown = (content_type or b"none").decode("latin-1")[:64]
            return UnsupportedMediaType(
                f"the body must be application/json, not {shown}",
                errors=[{"loc": ["header", "content-type"], "msg": "expected application/json"}],
            )
        if not _read_as_json(content_type):
            return None
        if len(body) > _OFFLOAD_BYTES:
            return await anyio.to_thread.run_sync(self._check_json, scope, body)
        return self._check_json(scope, body)

    def _check_json(self, scope: Scope, body: bytes) -> ServiceError | None:
        try:
            scope[PARSED_BODY] = check_json_body(body, self.max_json_depth)
        except BodyIssue as issue:
            return InvalidInput(issue.msg, errors=[{"loc": issue.loc, "msg": issue.msg}])
        return None


def _too_large(limit: int) -> ServiceError:
    return PayloadTooLarge(f"the body exceeds {limit} bytes")


async def _refuse(scope: Scope, send: Send, error: ServiceError) -> None:
    """Answer with the problem and never read what is left of the body."""
    response = render(error, scope.get("path"))

    async def no_body() -> Message:
        return {"type": "http.disconnect"}

    await response(scope, no_body, send)


class MethodRules:
    """HEAD on every GET, 405 on literal paths, and query strings without NUL.

    - HEAD is answered as the GET would be, without the body (RFC 9110 9.3.2).
    - A literal path (`/v1/migrations/plan`) owns its URL: a GET there is a 405 with `Allow`,
      not a 422 from a parametric route (`/v1/migrations/{migration_id}`) that happens to match.
    - NUL cannot be stored in PostgreSQL text; a query parameter holding one is a 422 naming it.
    """

    def __init__(self, app: ASGIApp, openapi: Callable[[], dict[str, Any]]) -> None:
        self.app = app
        self._openapi = openapi
        self._literal: dict[str, frozenset[str]] | None = None

    def _literal_paths(self) -> dict[str, frozenset[str]]:
        """Paths without parameters and their methods, read from the OpenAPI document (the one
        public listing of the routes, whatever the framework nests them in)."""
        if self._literal is None:
            self._literal = {
                path: frozenset(m.upper() for m in operations)
                for path, operations in self._openapi().get("paths", {}).items()
                if "{" not in path
            }
        return self._literal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = _nul_in_query(scope.get("query_string", b""))
        if problem is None:
            problem = self._method_not_allowed(scope)
        if problem is not None:
            await _refuse(scope, send, problem)
        elif scope["method"] == "HEAD":
            await self.app({**scope, "method": "GET"}, receive, _without_body(send))
        else:
            await self.app(scope, receive, send)

    def _method_not_allowed(self, scope: Scope) -> ServiceError | None:
        allowed = self._literal_paths().get(scope["path"])
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        if allowed is None or method in allowed or method == "OPTIONS":
            return None
        shown = sorted(allowed | {"HEAD"} if "GET" in allowed else allowed)
        return MethodNotAllowed(
            f"{scope['path']} accepts {', '.join(shown)}, not {scope['method']}",
            headers={"Allow": ", ".join(shown)},
        )


def _nul_in_query(query: bytes) -> ServiceError | None:
    if b"%00" not in query.lower() and b"\x00" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            where = name.replace("\x00", "")[:64]
            return InvalidInput(
                f"query parameter {where!r} contains a NUL character",
                errors=[{"loc": ["query", where], "msg": "NUL characters are not allowed"}],
            )
    return None


def _without_body(send: Send) -> Send:
    async def send_head(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return send_head


class Metrics:
    """Request counts and latencies by route template (not raw path: ids would explode labels)."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "numa_balloon_http_requests_total",
            "HTTP requests by method, route, status and caller (admin, key:<name>, agent, ...)",
            ["method", "route", "status", "actor"],
            registry=registry,
        )
        self.latency = Histogram(
            "numa_balloon_http_request_duration_seconds",
            "HTTP request latency by method and route",
            ["method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            method = scope["method"]
            principal: Any = scope.get("state", {}).get("principal")
            actor = principal.metrics_label if principal is not None else "anonymous"
            self.requests.labels(method, template, str(status), actor).inc()
            self.latency.labels(method, template).observe(time.perf_counter() - start)
