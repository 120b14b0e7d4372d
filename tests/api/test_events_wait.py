"""Waiting for events over HTTP against real uvicorn processes: long-poll, SSE, two replicas.

Nothing here measures speed: "returns early" means it answered well before the wait it asked
for, with the event that was written meanwhile.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from numa_balloon_testing.server import Server
from tests.api.factories import host_body
from tests.conftest import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def server(db_url: str) -> Iterator[Server]:
    with Server(db_url, admin_token=ADMIN_TOKEN) as srv:
        yield srv


def _client(srv: Server) -> httpx.Client:
    return httpx.Client(base_url=srv.url, timeout=90, headers=AUTH)


def _latest(c: httpx.Client) -> int:
    items = c.get("/v1/events", params={"limit": 500}).json()["items"]
    return items[-1]["seq"] if items else 0


def _long_poll(srv: Server, params: dict[str, Any]) -> tuple[float, httpx.Response]:
    with _client(srv) as c:
        start = time.monotonic()
        r = c.get("/v1/events", params=params)
        return time.monotonic() - start, r


WAITERS = 6  # more than the worker's database sessions (db_concurrency 4)


def test_long_poll_returns_early_on_a_write(server: Server) -> None:
    """Six long-polls wait at once and the write still gets a session: waiters hold none."""
    with _client(server) as c, ThreadPoolExecutor(WAITERS) as pool:
        since = _latest(c)
        waiting: list[Future[tuple[float, httpx.Response]]] = [
            pool.submit(_long_poll, server, {"since": since, "wait": 60}) for _ in range(WAITERS)
        ]
        time.sleep(1.5)
        assert not any(w.done() for w in waiting), "a long-poll answered before any write"
        host = c.post("/v1/hosts", json=host_body("lp-1"), timeout=20).json()
        results = [w.result(timeout=60) for w in waiting]
    for took, r in results:
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert [e["subject_id"] for e in items] == [host["id"]]
        assert items[0]["action"] == "host.created"
        assert took < 50, "the long-poll waited for its whole timeout instead of the write"


def test_long_poll_filters_and_times_out_empty(server: Server) -> None:
    with _client(server) as c, ThreadPoolExecutor(1) as pool:
        host = c.post("/v1/hosts", json=host_body("lp-2")).json()
        since = _latest(c)
        waiting = pool.submit(
            _long_poll, server, {"since": since, "wait": 60, "subject_id": host["id"]}
        )
        c.post("/v1/hosts", json=host_body("lp-3"))  # does not match the filter
        time.sleep(1.0)
        assert not waiting.done()
        c.patch(f"/v1/hosts/{host['id']}", json={"state": "maintenance"})
        _, r = waiting.result(timeout=60)
        assert [e["action"] for e in r.json()["items"]] == ["host.state_changed"]
        took, empty = _long_poll(server, {"since": _latest(c), "wait": 1})
    assert empty.status_code == 200 and empty.json()["items"] == []
    assert took >= 0.9
    bad = httpx.get(f"{server.url}/v1/events", params={"wait": 61}, headers=AUTH)
    assert bad.status_code == 422


class SseReader:
    """A minimal text/event-stream parser over an httpx streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()

    def next_event(self) -> dict[str, str]:
        event: dict[str, str] = {}
        for line in self.lines:
            if line == "":
                if "data" in event:
                    return event
                event = {}
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            event[key] = value.removeprefix(" ")
        raise EOFError("the stream ended")


def _stream_events(
    srv: Server, count: int, got: list[dict[str, str]], ready: threading.Event, **kw: Any
) -> None:
    with (
        httpx.Client(base_url=srv.url, timeout=60, headers=AUTH) as c,
        c.stream("GET", "/v1/events/stream", **kw) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        ready.set()
        reader = SseReader(r)
        while len(got) < count:
            got.append(reader.next_event())


def _collect(srv: Server, count: int, write: Any, **kw: Any) -> list[dict[str, str]]:
    got: list[dict[str, str]] = []
    ready = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        done = pool.submit(_stream_events, srv, count, got, ready, **kw)
        assert ready.wait(30)
        time.sleep(0.3)
        write()
        done.result(timeout=60)
    return got


def test_sse_delivers_and_resumes_with_last_event_id(server: Server) -> None:
    with _client(server) as c:
        names: list[str] = []

        def two_hosts() -> None:
            for name in ("sse-1", "sse-2"):
                names.append(c.post("/v1/hosts", json=host_body(name)).json()["id"])

        got = _collect(server, 2, two_hosts, params={"kind": "host.created"})
        assert [json.loads(e["data"])["subject_id"] for e in got] == names
        assert [e["event"] for e in got] == ["host.created"] * 2
        assert int(got[1]["id"]) > int(got[0]["id"])
        # Disconnected; meanwhile a third host; the reconnect resumes right after the last id.
        third = c.post("/v1/hosts", json=host_body("sse-3")).json()["id"]
        resumed = _collect(
            server,
            1,
            lambda: None,
            params={"kind": "host.created"},
            headers={"Last-Event-ID": got[0]["id"]},
        )
    assert json.loads(resumed[0]["data"])["subject_id"] == names[1]
    assert third != names[1]


@pytest.mark.postgres
def test_two_replicas_on_postgres_see_each_others_events(postgres_db_url: str) -> None:
    with (
        Server(postgres_db_url, admin_token=ADMIN_TOKEN) as a,
        Server(postgres_db_url, admin_token=ADMIN_TOKEN) as b,
        _client(b) as writer,
        ThreadPoolExecutor(1) as pool,
    ):
        since = _latest(writer)
        waiting = pool.submit(_long_poll, a, {"since": since, "wait": 60})
        time.sleep(1.0)
        host = writer.post("/v1/hosts", json=host_body("replica-b")).json()
        took, r = waiting.result(timeout=60)
        assert [e["subject_id"] for e in r.json()["items"]] == [host["id"]]
        assert took < 50
        # And the stream on B sees a write made through A.
        with _client(a) as other:
            got = _collect(
                b,
                1,
                lambda: other.patch(f"/v1/hosts/{host['id']}", json={"state": "maintenance"}),
                params={"subject_id": host["id"]},
            )
    assert got[0]["event"] == "host.state_changed"
