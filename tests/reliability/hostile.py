"""Helpers of the hostile suite: a real multi-worker uvicorn on its own PostgreSQL database, and
requests fired at the same instant from several threads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx

from numa_balloon_testing.server import Server
from service.db.invariants import audit
from service.db.session import make_sessionmaker
from tests.api.factories import domain_body, host_body
from tests.conftest import engine_for

Call = Callable[[httpx.Client], httpx.Response]


@contextmanager
def live_server(db_url: str, workers: int = 2, **env: str) -> Iterator[Server]:
    with Server(db_url, workers=workers, env=env) as server:
        yield server


def client(server: Server) -> httpx.Client:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


def at_once(server: Server, calls: Sequence[Call]) -> list[httpx.Response]:
    """Run the calls from one thread each, released together by a barrier."""
    barrier = threading.Barrier(len(calls))
    clients = [client(server) for _ in calls]
    for c in clients:  # connect first, so the barrier releases requests, not handshakes
        c.get("/healthz")

    def run(i: int) -> httpx.Response:
        barrier.wait()
        return calls[i](clients[i])

    try:
        with ThreadPoolExecutor(len(calls)) as pool:
            return list(pool.map(run, range(len(calls))))
    finally:
        for c in clients:
            c.close()


def squeeze_host_with_domains(
    http: httpx.Client, name: str, domains: int = 5, vnode_mib: int = 640
) -> tuple[str, list[str]]:
    """A 2x4096 MiB host holding `domains` domains of 2 x `vnode_mib` (the issue's shape)."""
    r = http.post("/v1/hosts", json=host_body(name, n=2, memory_mib=4096, cpus=8))
    assert r.status_code == 201, r.text
    host_id = r.json()["id"]
    ids = []
    for i in range(domains):
        body = domain_body(f"{name}-d{i}", [vnode_mib, vnode_mib], host_id=host_id)
        body["memory"]["dynamic_min_mib"] = vnode_mib // 2
        r = http.post("/v1/domains", json=body)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return host_id, ids


def audit_db(db_url: str) -> dict[str, Any]:
    return audit(make_sessionmaker(engine_for(db_url)))
