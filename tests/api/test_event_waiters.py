"""The worker's waiters (long-polls and streams): one read of the log per wake-up however many
wait, each handed only what matches it, gone with its client, and capped per credential and per
worker. In process where statements are counted, against real uvicorn where connections matter.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI
from sqlalchemy import event, insert

from numa_balloon_testing.server import Server
from service.api.watch import HOLE_GRACE_S, MAX_HOLES, EventHub, LogCursor
from service.app import create_app
from service.db.events import EventFilter, events_after
from service.db.models import Event
from service.settings import Settings
from tests.api.factories import host_body
from tests.api.test_events_wait import SseReader
from tests.conftest import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


T = datetime(2026, 12, 1, tzinfo=UTC)  # events carry the writer's clock: no column default


def until(check: Callable[[], bool], timeout_s: float = 30, what: str = "") -> None:
    """Wait for a condition another thread or process makes true."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.02)


class InProcess:
    """Concurrent requests to an app in this process (its event loop in a portal thread)."""

    def __init__(self, app: FastAPI, portal: BlockingPortal) -> None:
        self.app = app
        self.portal = portal
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers=AUTH,
            timeout=60,
        )

    @property
    def hub(self) -> EventHub:
        hub: EventHub = self.app.state.event_hub
        return hub

    def start(self, method: str, url: str, **kw: Any) -> Future[httpx.Response]:
        return self.portal.start_task_soon(lambda: self.http.request(method, url, **kw))

    def call(self, method: str, url: str, **kw: Any) -> httpx.Response:
        return self.start(method, url, **kw).result(timeout=60)


@contextmanager
def in_process(db_url: str, **settings: Any) -> Iterator[InProcess]:
    app = create_app(Settings(database_url=db_url, admin_token=ADMIN_TOKEN, **settings))
    try:
        with start_blocking_portal() as portal:
            c = InProcess(app, portal)
            try:
                yield c
            finally:
                portal.call(c.http.aclose)
    finally:
        app.state.engine.dispose()


@contextmanager
def log_reads(app: FastAPI) -> Iterator[list[str]]:
    """The SELECTs of the events table the app sends meanwhile (the write's INSERT is not one)."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM events" in statement:
            seen.append(statement)

    engine = app.state.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _latest(c: InProcess) -> int:
    items = c.call("GET", "/v1/events", params={"limit": 500}).json()["items"]
    return int(items[-1]["seq"]) if items else 0


@pytest.mark.parametrize("waiters", [1, 25])
def test_one_read_of_the_log_per_wake_up_however_many_wait(db_url: str, waiters: int) -> None:
    """Each waiter reads its first page; after that a write wakes them all with one read."""
    # No poll tick during the test: only the write's commit wakes the reader.
    with in_process(db_url, events_poll_s=10) as c:
        since = _latest(c)
        with log_reads(c.app) as reads:
            polls = [
                c.start("GET", "/v1/events", params={"since": since, "wait": 30, "kind": "host"})
                for _ in range(waiters)
            ]
            # Each first page, and where the reader starts: nothing more until something happens.
            until(lambda: len(reads) >= waiters + 1, what="the waiters' first pages")
            before = len(reads)
            assert c.hub.waiting("long_poll") == waiters
            host = c.call("POST", "/v1/hosts", json=host_body("one-read")).json()
            answers = [p.result(timeout=60) for p in polls]
            woken = len(reads) - before
        assert woken == 1, reads[before:]
    for r in answers:
        assert r.status_code == 200, r.text
        assert [(e["action"], e["subject_id"]) for e in r.json()["items"]] == [
            ("host.created", host["id"])
        ]
    assert c.hub.waiting() == 0


def test_each_waiter_gets_only_what_matches_it(db_url: str) -> None:
    with in_process(db_url, events_poll_s=10) as c:
        a = c.call("POST", "/v1/hosts", json=host_body("match-a")).json()
        b = c.call("POST", "/v1/hosts", json=host_body("match-b")).json()
        key = c.call("POST", "/v1/api-keys", json={"name": "ops", "role": "operator"}).json()
        since = _latest(c)
        filters: dict[str, dict[str, Any]] = {
            "subject a": {"subject_id": a["id"]},
            "state changes": {"kind": "host.state_changed"},
            "by the key": {"actor": "key:ops"},
            "b, by admin": {"subject_id": b["id"], "actor": "admin"},
            "migrations": {"kind": "migration"},
        }
        polls = {
            name: c.start("GET", "/v1/events", params={"since": since, "wait": 3, **f})
            for name, f in filters.items()
        }
        until(lambda: c.hub.waiting() == len(filters), what="the waiters")
        as_key = {"Authorization": f"Bearer {key['secret']}"}
        patch = {"state": "maintenance"}
        c.call("PATCH", f"/v1/hosts/{a['id']}", json=patch, headers=as_key)
        got = {name: p.result(timeout=60).json()["items"] for name, p in polls.items()}
    expected = ("host.state_changed", a["id"], "key:ops")
    for name in ("subject a", "state changes", "by the key"):
        assert [(e["action"], e["subject_id"], e["actor"]) for e in got[name]] == [expected], name
    assert got["b, by admin"] == [] and got["migrations"] == []


@pytest.mark.postgres
def test_an_event_committed_out_of_seq_order_still_reaches_the_waiter(
    postgres_db_url: str,
) -> None:
    """Seqs are taken at insert: an event can commit after one with a higher seq. The waiter for
    the lower one gets it when it commits, not after its whole wait (nor never)."""
    with in_process(postgres_db_url, events_poll_s=0.2) as c:
        since = _latest(c)
        subject = "6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"
        poll = c.start(
            "GET", "/v1/events", params={"since": since, "wait": 30, "subject_id": subject}
        )
        until(lambda: c.hub.waiting() == 1 and c.hub.position is not None, what="the reader")
        engine = c.app.state.engine
        row = {"actor": "test", "action": "host.created", "subject_type": "host", "at": T}
        with engine.connect() as slow, engine.connect() as fast:
            mine = slow.execute(
                insert(Event).values(**row, subject_id=subject)
            ).inserted_primary_key
            other = fast.execute(insert(Event).values(**row)).inserted_primary_key
            fast.commit()
            assert other[0] > mine[0]
            until(lambda: (c.hub.position or 0) >= other[0], what="the reader past the later seq")
            assert not poll.done()
            slow.commit()
        started = time.monotonic()
        r = poll.result(timeout=60)
    assert [e["seq"] for e in r.json()["items"]] == [mine[0]]
    assert time.monotonic() - started < 25, "it waited for its whole wait"


FILTER_CASES = [
    EventFilter(),
    EventFilter(subject_id="6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"),
    EventFilter(kinds=("host",)),
    EventFilter(kinds=("host.created", "domain")),
    EventFilter(actor="key:ops"),
    EventFilter(subject_id="6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70", kinds=("domain.deleted",)),
]


def test_the_filter_in_python_says_what_the_filter_in_sql_says(db_url: str) -> None:
    """Waiters are matched in Python against events read once; pages in SQL. Same answers."""
    subject = "6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"
    rows = [
        {
            "actor": actor,
            "action": action,
            "subject_type": action.split(".")[0],
            "subject_id": sid,
            "at": T,
        }
        for actor in ("admin", "key:ops", "key:ops2")
        for action in ("host.created", "domain.deleted", "domain.created", "migration.started")
        for sid in (subject, None, "0b7c1a2e-0000-4000-8000-000000000001")
    ]
    app = create_app(Settings(database_url=db_url, admin_token=ADMIN_TOKEN))
    try:
        with app.state.sessionmaker() as session:
            session.execute(insert(Event), rows)
            session.commit()
            for where in FILTER_CASES:
                every = events_after(session, 0, 10_000, EventFilter())
                in_python = [
                    e.seq
                    for e in every
                    if where.matches(
                        actor=e.actor,
                        action=e.action,
                        subject_type=e.subject_type,
                        subject_id=e.subject_id,
                    )
                ]
                assert in_python == [e.seq for e in events_after(session, 0, 10_000, where)]
    finally:
        app.state.engine.dispose()


# --- against real uvicorn: connections that come and go ---------------------------------------


def _waiters(srv: Server, kind: str) -> int:
    text = httpx.get(f"{srv.url}/metrics", headers=AUTH, timeout=30).text
    found = re.search(rf'^numa_balloon_event_waiters\{{kind="{kind}"\}} (\S+)$', text, re.M)
    return int(float(found.group(1))) if found else 0


def _open(srv: Server, path: str, token: str = ADMIN_TOKEN) -> socket.socket:
    """A request left waiting on a raw connection (closing it is the client going away)."""
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    return sock


def _head(sock: socket.socket) -> str:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode("latin-1")


@pytest.fixture
def server(db_url: str) -> Iterator[Server]:
    with Server(db_url, admin_token=ADMIN_TOKEN) as srv:
        yield srv


def test_a_waiter_leaves_with_its_client(server: Server) -> None:
    """Closed connections take their long-polls and streams with them, long before the wait."""
    polls = [_open(server, "/v1/events?wait=60&kind=migration") for _ in range(4)]
    streams = [_open(server, "/v1/events/stream?kind=migration") for _ in range(3)]
    for s in streams:
        assert _head(s).startswith("HTTP/1.1 200")
    until(lambda: _waiters(server, "long_poll") == 4, what="4 long-polls")
    until(lambda: _waiters(server, "stream") == 3, what="3 streams")
    started = time.monotonic()
    for s in polls[:3] + streams[:2]:
        s.close()
    until(lambda: _waiters(server, "long_poll") == 1, what="3 long-polls gone")
    until(lambda: _waiters(server, "stream") == 1, what="2 streams gone")
    assert time.monotonic() - started < 30
    for s in polls[3:] + streams[2:]:
        s.close()
    until(lambda: _waiters(server, "long_poll") + _waiters(server, "stream") == 0)


def test_caps_per_credential_and_per_worker_answer_429(db_url: str) -> None:
    env = {
        "NUMA_BALLOON_EVENTS_MAX_WAITERS_PER_KEY": "2",
        "NUMA_BALLOON_EVENTS_MAX_WAITERS": "3",
    }
    with Server(db_url, admin_token=ADMIN_TOKEN, env=env) as srv:
        keys = [
            httpx.post(
                f"{srv.url}/v1/api-keys", headers=AUTH, json={"name": f"w{i}", "role": "viewer"}
            ).json()["secret"]
            for i in range(2)
        ]
        admin = [_open(srv, "/v1/events?wait=60&kind=migration"), _open(srv, "/v1/events/stream")]
        until(lambda: _waiters(srv, "long_poll") + _waiters(srv, "stream") == 2)
        # The admin token is at its 2: a third waiter of its own is refused, stream or long-poll.
        for path in ("/v1/events?wait=60", "/v1/events/stream"):
            r = httpx.get(f"{srv.url}{path}", headers=AUTH, timeout=30)
            assert r.status_code == 429, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert int(r.headers["Retry-After"]) >= 1
            assert "EVENTS_MAX_WAITERS_PER_KEY" in r.json()["detail"]
        # A page without wait is no waiter: still answered.
        assert httpx.get(f"{srv.url}/v1/events", headers=AUTH, timeout=30).status_code == 200
        # Another key gets the worker's third; then the worker is full for everyone.
        third = _open(srv, "/v1/events?wait=60&kind=migration", keys[0])
        until(lambda: _waiters(srv, "long_poll") == 2)
        full = httpx.get(
            f"{srv.url}/v1/events?wait=60", headers={"Authorization": f"Bearer {keys[1]}"}
        )
        assert full.status_code == 429 and "EVENTS_MAX_WAITERS)" in full.json()["detail"]
        # A client going frees its place at once.
        admin[0].close()
        until(lambda: _waiters(srv, "long_poll") == 1)
        r = httpx.get(f"{srv.url}/v1/events", params={"wait": 0.5}, headers=AUTH, timeout=30)
        assert r.status_code == 200
        for s in [*admin[1:], third]:
            s.close()


@pytest.mark.postgres
def test_filters_deliver_the_right_events_on_both_workers(postgres_db_url: str) -> None:
    """Two processes on one PostgreSQL: waiters on each get what matches them, whichever process
    wrote it (a write wakes its own process at once, the other within its poll interval)."""
    with (
        Server(postgres_db_url, admin_token=ADMIN_TOKEN) as a,
        Server(postgres_db_url, admin_token=ADMIN_TOKEN) as b,
        httpx.Client(base_url=a.url, headers=AUTH, timeout=60) as via_a,
        httpx.Client(base_url=b.url, headers=AUTH, timeout=60) as via_b,
        ThreadPoolExecutor(8) as pool,
    ):
        h1 = via_a.post("/v1/hosts", json=host_body("two-1")).json()["id"]
        h2 = via_a.post("/v1/hosts", json=host_body("two-2")).json()["id"]
        key = via_a.post("/v1/api-keys", json={"name": "ops", "role": "operator"}).json()
        since = via_a.get("/v1/events", params={"limit": 500}).json()["items"][-1]["seq"]

        def poll(srv: Server, wait: int = 60, **f: Any) -> Future[list[dict[str, Any]]]:
            params = {"since": since, "wait": wait, **f}
            return pool.submit(
                lambda: httpx.get(
                    f"{srv.url}/v1/events", params=params, headers=AUTH, timeout=90
                ).json()["items"]
            )

        def stream(srv: Server, count: int, **f: Any) -> Future[list[dict[str, Any]]]:
            def read() -> list[dict[str, Any]]:
                with httpx.stream(
                    "GET", f"{srv.url}/v1/events/stream", params=f, headers=AUTH, timeout=90
                ) as r:
                    reader = SseReader(r)
                    return [json.loads(reader.next_event()["data"]) for _ in range(count)]

            return pool.submit(read)

        on_a = {
            "h1": poll(a, subject_id=h1),
            "by key": poll(a, actor="key:ops"),
            "h2 by admin": poll(a, subject_id=h2, actor="admin"),
        }
        on_b = {
            "state": poll(b, kind="host.state_changed"),
            # nothing matches it: it answers empty when its wait ends (the test's own end)
            "migrations": poll(b, wait=20, kind="migration"),
        }
        streams = {"a h1": stream(a, 1, subject_id=h1), "b state": stream(b, 2, kind="host")}
        until(lambda: _waiters(a, "long_poll") == 3 and _waiters(b, "long_poll") == 2)
        until(lambda: _waiters(a, "stream") == 1 and _waiters(b, "stream") == 1)
        as_key = {"Authorization": f"Bearer {key['secret']}"}
        via_b.patch(f"/v1/hosts/{h1}", json={"state": "maintenance"}, headers=as_key)
        first = ("host.state_changed", h1, "key:ops")
        for name, waiter in (
            ("h1", on_a["h1"]),
            ("by key", on_a["by key"]),
            ("state", on_b["state"]),
        ):
            got = [(e["action"], e["subject_id"], e["actor"]) for e in waiter.result(timeout=60)]
            assert got == [first], name
        assert not on_a["h2 by admin"].done() and not on_b["migrations"].done()
        via_a.patch(f"/v1/hosts/{h2}", json={"state": "maintenance"})
        got = on_a["h2 by admin"].result(timeout=60)
        assert [(e["action"], e["subject_id"]) for e in got] == [("host.state_changed", h2)]
        assert [e["subject_id"] for e in streams["a h1"].result(timeout=60)] == [h1]
        assert [e["subject_id"] for e in streams["b state"].result(timeout=60)] == [h1, h2]
        assert not on_b["migrations"].done()
        assert on_b["migrations"].result(timeout=60) == []


def test_the_cursor_looks_for_skipped_seqs_for_a_while_then_forgets_them() -> None:
    cursor = LogCursor.from_recent([10, 9, 7], window=5, now=0.0)
    assert (cursor.top, cursor.holes(0.0)) == (10, [6, 8])  # 5 and below: outside the window
    assert cursor.absorb([8, 12, 13], now=1.0) == {8}  # 8 came late; 11 is skipped now
    assert cursor.top == 13 and cursor.holes(1.0) == [6, 11]
    assert cursor.holes(HOLE_GRACE_S + 0.5) == [11]  # 6 is past its grace: rolled back
    assert cursor.holes(HOLE_GRACE_S + 1.5) == []
    jump = 13 + MAX_HOLES + 10
    cursor.absorb([jump], now=100.0)  # a jump: only the most recent holes are kept
    assert cursor.holes(100.0) == list(range(jump - MAX_HOLES, jump))
    assert LogCursor.from_recent([], window=5, now=0.0).top == 0
