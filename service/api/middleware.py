"""ASGI middleware: request limits (body size, JSON depth) and Prometheus metrics.

Limits are enforced before FastAPI parses anything, so a 50 MB body or a 100,000-deep JSON array
costs a bounded read and a clean 413/422 instead of memory or a RecursionError.
"""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import problem_response

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


def json_depth(body: bytes) -> int:
    """Maximum nesting depth of a JSON text, ignoring brackets inside strings (vectorized)."""
    stripped = _STRING.sub(b'""', body)
    if not stripped:
        return 0
    deltas = _OPEN[np.frombuffer(stripped, dtype=np.uint8)]
    if not deltas.any():
        return 0
    return int(np.cumsum(deltas, dtype=np.int64).max())


class RequestLimits:
    def __init__(self, app: ASGIApp, max_body_bytes: int, max_json_depth: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(scope, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(scope, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body and json_depth(body) > self.max_json_depth:
            response = problem_response(
                422,
                "validation-error",
                "The request is not valid",
                f"JSON nested deeper than {self.max_json_depth} levels",
                errors=[{"loc": ["body"], "msg": f"nesting deeper than {self.max_json_depth}"}],
            )
            await response(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        response = problem_response(
            413,
            "payload-too-large",
            "Request body too large",
            f"the body exceeds {self.max_body_bytes} bytes",
        )

        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, no_body, send)


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
