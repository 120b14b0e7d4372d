"""A synchronous in-process client: httpx over ASGITransport, driven through an anyio portal.

Starlette's TestClient is deprecated with httpx here; this keeps tests plain functions while the
app runs exactly as under uvicorn (same middleware, same thread pool for sync endpoints, the
plain connections its lifespan opens).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI

T = TypeVar("T")


class ApiClient:
    def __init__(self, app: FastAPI, portal: BlockingPortal, token: str | None) -> None:
        self.app = app
        self._portal = portal
        self.token = token
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", timeout=60
        )

    def request(
        self, method: str, url: str, *, token: str | type[Ellipsis] | None = ..., **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        bearer = self.token if token is ... else token
        if bearer is not None and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {bearer}"
        return self._portal.call(
            lambda: self._client.request(method, url, headers=headers, **kwargs)
        )

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)

    def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """`fn()` awaited on the app's event loop (what uvicorn's lifespan would do there)."""
        return self._portal.call(fn)

    def close(self) -> None:
        self._portal.call(self._client.aclose)


@contextmanager
def api_client(app: FastAPI, token: str | None) -> Iterator[ApiClient]:
    with start_blocking_portal() as portal:
        client = ApiClient(app, portal, token)
        db = app.state.db
        # As a worker's lifespan does: the plain connections of the hot routes open on the app's
        # event loop (PostgreSQL), so that the tests take the paths the service takes.
        portal.call(db.plain.open)
        portal.call(db.plain_writes.open)
        try:
            yield client
        finally:
            portal.call(db.plain_writes.close)
            portal.call(db.plain.close)
            client.close()
