"""Fault injection on PostgreSQL: a backend terminated mid-transaction, the database unreachable
for a while, a worker SIGKILLed mid-request, and claims left behind by a client that vanished."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from bench.load import audit_api
from numa_balloon_testing.server import Server
from service.app import create_app
from service.db import raw
from service.db.invariants import audit_db
from service.settings import Settings
from tests.api.client import api_client
from tests.api.factories import domain_body, host_body
from tests.conftest import ADMIN_TOKEN, PG_ADMIN_DSN

pytestmark = [pytest.mark.postgres, pytest.mark.reliability]


def _pg_client(url: str, **settings: Any) -> tuple[FastAPI, Any]:
    app = create_app(Settings(database_url=url, admin_token=ADMIN_TOKEN, **settings))
    return app, api_client(app, ADMIN_TOKEN)


def _db_audit_clean(url: str) -> None:
    assert audit_db(url) == []


# --- a backend terminated in the middle of a transaction -------------------------------------


def test_backend_terminated_mid_transaction_is_503_and_nothing_is_half_written(
    postgres_db_url: str,
) -> None:
    app, ctx = _pg_client(postgres_db_url)
    with ctx as c:
        # The sessions' path (a write the event loop's path left to it): see below for that one.
        c.call(app.state.db.plain_writes.close)
        host = c.post("/v1/hosts", json=host_body("h", n=2, memory_mib=16384)).json()
        dom = c.post("/v1/domains", json=domain_body("vm", [4096, 4096], host_id=host["id"]))
        did = dom.json()["id"]
        killed: list[int] = []

        # Right after the request locks the host row, its backend is terminated from an admin
        # connection: the transaction dies between its read and its writes.
        def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            if not killed and "FOR UPDATE" in statement and "hosts" in statement:
                pid = cursor.connection.info.backend_pid
                with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                killed.append(pid)

        event.listen(app.state.engine, "after_cursor_execute", after)
        r = c.put(f"/v1/domains/{did}/target", json={"target_mib": 5120})
        event.remove(app.state.engine, "after_cursor_execute", after)
        assert killed
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"].isdigit()
        assert r.json()["type"] == "/problems/unavailable"
        # Nothing of it was written, and the pool recovers without a restart.
        got = c.get(f"/v1/domains/{did}")
        assert got.status_code == 200 and got.json()["memory"]["target_mib"] == 8192
        r = c.put(f"/v1/domains/{did}/target", json={"target_mib": 5120})
        assert r.status_code == 200 and r.json()["memory"]["target_mib"] == 5120
    app.state.engine.dispose()
    _db_audit_clean(postgres_db_url)


def _kill_plain_backend(monkeypatch: pytest.MonkeyPatch, when: str) -> list[int]:
    """Terminate the backend of the target write on the event loop, once: right after its lock
    (`when="locked"`), or once its statements are sent, before the commit (`"commit"`)."""
    killed: list[int] = []

    def kill(conn: psycopg.AsyncConnection[Any]) -> None:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            # Waits (up to 5 s) until the backend has exited: the next statement finds it gone.
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (conn.info.backend_pid,))
        killed.append(conn.info.backend_pid)

    rows, execute = raw.PlainTransaction.rows, raw.PlainTransaction.execute

    async def locked(self: raw.PlainTransaction, stmt: Any, values: Any) -> Any:
        out = await rows(self, stmt, values)
        if when == "locked" and not killed and "FOR UPDATE" in str(stmt):
            kill(self._conn)
        return out

    async def written(self: raw.PlainTransaction, stmt: Any, values: Any) -> int:
        out = await execute(self, stmt, values)
        if when == "commit" and not killed and "UPDATE domains" in str(stmt):
            kill(self._conn)
        return out

    monkeypatch.setattr(raw.PlainTransaction, "rows", locked)
    monkeypatch.setattr(raw.PlainTransaction, "execute", written)
    return killed


def test_a_target_write_whose_backend_dies_on_the_loop_is_written_once(
    postgres_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after its lock, the write on the event loop wrote nothing: the sessions' path
    answers it, and it is written once. Killed before its commit, the write may or may not
    have committed as far as the service can tell: a 503 says so, and nothing writes it again."""
    app, ctx = _pg_client(postgres_db_url)
    with ctx as c:
        host = c.post("/v1/hosts", json=host_body("h", n=2, memory_mib=16384)).json()
        did = c.post(
            "/v1/domains", json=domain_body("vm", [4096, 4096], host_id=host["id"])
        ).json()["id"]
        killed = _kill_plain_backend(monkeypatch, "locked")
        r = c.put(f"/v1/domains/{did}/target", json={"target_mib": 5120})
        assert killed and r.status_code == 200, r.text
        assert r.json()["memory"]["target_mib"] == 5120 and r.json()["version"] == 2
        events = c.get(f"/v1/events?subject_id={did}&limit=100").json()["items"]
        assert [e["action"] for e in events].count("domain.target_changed") == 1
        monkeypatch.undo()
        killed = _kill_plain_backend(monkeypatch, "commit")
        r = c.put(f"/v1/domains/{did}/target", json={"target_mib": 6144})
        assert killed and r.status_code == 503, r.text
        assert r.json()["type"] == "/problems/unavailable"
        assert "may or may not" in r.json()["detail"]
        monkeypatch.undo()
        got = c.get(f"/v1/domains/{did}").json()  # the backend died before COMMIT reached it
        assert got["memory"]["target_mib"] == 5120 and got["version"] == 2
        r = c.put(f"/v1/domains/{did}/target", json={"target_mib": 6144})
        assert r.status_code == 200 and r.json()["version"] == 3
    app.state.engine.dispose()
    _db_audit_clean(postgres_db_url)


def test_backends_terminated_during_a_burst_never_cause_a_500(postgres_db_url: str) -> None:
    app, ctx = _pg_client(postgres_db_url)
    dbname = postgres_db_url.rsplit("/", 1)[1]
    stop = threading.Event()
    kills = Counter[str]()

    def killer() -> None:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            while not stop.is_set():
                n = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (dbname,),
                ).fetchone()
                kills["backends"] += n[0] if n else 0
                time.sleep(0.05)

    with ctx as c:
        host = c.post("/v1/hosts", json=host_body("h", n=2, memory_mib=65536)).json()
        ids = [
            c.post("/v1/domains", json=domain_body(f"vm{i}", [2048], host_id=host["id"])).json()[
                "id"
            ]
            for i in range(8)
        ]
        t = threading.Thread(target=killer)
        t.start()

        def work(i: int) -> int:
            target = 1024 + 128 * (i % 8)
            r = c.put(f"/v1/domains/{ids[i % 8]}/target", json={"target_mib": target})
            return r.status_code

        try:
            with ThreadPoolExecutor(8) as pool:
                statuses = Counter(pool.map(work, range(160)))
        finally:
            stop.set()
            t.join()
        assert set(statuses) <= {200, 409, 412, 503}, statuses
        assert kills["backends"] > 0
        # Recovered: every domain can be read and changed again.
        assert all(c.get(f"/v1/domains/{d}").status_code == 200 for d in ids)
        assert c.put(f"/v1/domains/{ids[0]}/target", json={"target_mib": 2048}).status_code == 200
    app.state.engine.dispose()
    _db_audit_clean(postgres_db_url)


# --- the database unreachable for a few seconds ----------------------------------------------


class Proxy:
    """A TCP forwarder to PostgreSQL that can be cut (every connection dropped, port closed)."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            # shutdown() stops the listening and wakes the accept() thread (close() alone does not)
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for s in self._conns:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._conns.clear()

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    p = Proxy()
    p.start()
    yield p
    p.stop()


def test_database_unreachable_is_503_with_retry_after_then_recovers(
    postgres_db_url: str, proxy: Proxy
) -> None:
    url = postgres_db_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    assert url != postgres_db_url
    app, ctx = _pg_client(url)
    with ctx as c:
        host = c.post("/v1/hosts", json=host_body("h", n=2, memory_mib=16384)).json()
        did = c.post("/v1/domains", json=domain_body("vm", [2048], host_id=host["id"])).json()["id"]
        proxy.stop()
        outage = [
            c.put(f"/v1/domains/{did}/target", json={"target_mib": 1024}),
            c.get(f"/v1/domains/{did}"),
            c.post("/v1/domains", json=domain_body("vm2", [1024], host_id=host["id"])),
            c.get(f"/v1/hosts/{host['id']}/accounting"),
            c.get("/readyz"),
        ]
        for r in outage:
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"].isdigit()
            assert r.headers["content-type"].startswith("application/problem+json")
        assert c.get("/healthz").status_code == 200  # the process itself is fine
        time.sleep(1.5)  # the outage lasts a while; the app is not restarted
        proxy.start()
        assert c.get("/readyz").status_code == 200
        r = c.put(f"/v1/domains/{did}/target", json={"target_mib": 1024})
        assert r.status_code == 200, r.text
        assert c.get(f"/v1/domains/{did}").json()["memory"]["target_mib"] == 1024
        names = [d["name"] for d in c.get("/v1/domains").json()["items"]]
        assert names == ["vm"]  # the create during the outage did not half-happen
    app.state.engine.dispose()
    _db_audit_clean(postgres_db_url)


# --- a worker SIGKILLed mid-request ----------------------------------------------------------


def test_worker_sigkilled_mid_request_leaves_no_partial_write(postgres_db_url: str) -> None:
    srv = Server(postgres_db_url, workers=2, admin_token=ADMIN_TOKEN)
    srv.start()
    try:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=srv.url, headers=auth, timeout=30) as c:
            host = c.post("/v1/hosts", json=host_body("h", n=2, memory_mib=65536)).json()
        stop = threading.Event()
        statuses: Counter[int | str] = Counter()

        def hammer(i: int) -> None:
            n = 0
            with httpx.Client(base_url=srv.url, headers=auth, timeout=30) as c:
                while not stop.is_set():
                    n += 1
                    body = domain_body(f"w{i}-{n}", [1024, 1024], host_id=host["id"])
                    try:
                        r = c.post("/v1/domains", json=body)
                        statuses[r.status_code] += 1
                        if r.status_code == 201:
                            did = r.json()["id"]
                            t = c.put(f"/v1/domains/{did}/target", json={"target_mib": 1536})
                            statuses[t.status_code] += 1
                    except httpx.HTTPError:
                        statuses["dropped"] += 1

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        while sum(v for k, v in statuses.items() if k != "dropped") < 30:
            time.sleep(0.02)
        victim = srv.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        while sum(v for k, v in statuses.items() if k != "dropped") < 90:
            time.sleep(0.02)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert all(isinstance(k, str) or k in (200, 201, 409) for k in statuses), statuses
        # The service still answers (the other worker, and the supervisor's replacement).
        with httpx.Client(base_url=srv.url, headers=auth, timeout=30) as c:
            assert c.get("/readyz").status_code == 200
        audit = asyncio.run(audit_api(srv.url, ADMIN_TOKEN))
        assert audit.overcommitted == [] and audit.differences == [], audit
    finally:
        srv.stop()
    _db_audit_clean(postgres_db_url)


# --- claims left by a client that vanished ---------------------------------------------------


def test_claims_of_a_vanished_client_expire_and_the_heartbeat_fails_the_migration(
    postgres_db_url: str,
) -> None:
    app, ctx = _pg_client(postgres_db_url, claim_ttl_s=1.0)
    with ctx as c:
        src = c.post("/v1/hosts", json=host_body("src", n=1, memory_mib=16384)).json()
        dst = c.post("/v1/hosts", json=host_body("dst", n=1, memory_mib=4096)).json()
        did = c.post(
            "/v1/domains",
            json=domain_body("vm", [4096], dynamic_min_mib=4096, host_id=src["id"]),
        ).json()["id"]
        m = c.post("/v1/migrations", json={"domain_id": did, "destination_host_id": dst["id"]})
        assert m.status_code == 201, m.text
        acc = c.get(f"/v1/hosts/{dst['id']}/accounting").json()
        assert acc["pnodes"][0]["claimed_mib"] == 4096
        # The client that started it is gone. While the claim lives, the memory is taken...
        blocked = c.post("/v1/domains", json=domain_body("x", [1024], host_id=dst["id"]))
        assert blocked.status_code == 409
        time.sleep(1.2)  # ...past the TTL it no longer counts,
        late = c.post("/v1/domains", json=domain_body("y", [1024], host_id=dst["id"]))
        assert late.status_code == 201, late.text
        # and the host agent's next heartbeat fails the migration and frees its claims.
        beat = c.put(
            f"/v1/agent/hosts/{dst['id']}/observed",
            json={"pnodes": [{"index": 0, "free_mib": 3072}]},
            token=dst["agent_token"],
        )
        assert beat.status_code == 200, beat.text
        got = c.get(f"/v1/migrations/{m.json()['id']}").json()
        assert got["state"] == "failed" and got["claims"] == []
        assert "expired" in got["reason"]
        assert c.get(f"/v1/domains/{did}").json()["state"] == "running"
        acc = c.get(f"/v1/hosts/{dst['id']}/accounting").json()
        assert acc["pnodes"][0]["claimed_mib"] == 0
        assert acc["pnodes"][0]["allocated_mib"] == 1024
    app.state.engine.dispose()
    _db_audit_clean(postgres_db_url)
