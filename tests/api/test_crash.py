"""A real uvicorn process SIGKILLed mid-migration, restarted on the same database: `advance` or
`abort` completes and no claim leaks. All migration state lives in the database."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from numa_balloon_testing.server import Server
from service.db.invariants import audit as audit_rows
from service.db.session import make_engine, make_sessionmaker
from tests.api.factories import slit
from tests.conftest import ADMIN_TOKEN


@pytest.fixture
def server(db_url: str) -> Iterator[Server]:
    with Server(db_url, admin_token=ADMIN_TOKEN) as srv:
        yield srv


def audit(db_url: str) -> dict[str, int]:
    engine = make_engine(db_url)
    try:
        return audit_rows(make_sessionmaker(engine))
    finally:
        engine.dispose()


def api(srv: Server) -> httpx.Client:
    return httpx.Client(
        base_url=srv.url, timeout=30, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )


def setup_migration(c: httpx.Client) -> tuple[dict[str, Any], dict[str, Any], str]:
    one = c.post(
        "/v1/hosts",
        json={"name": "one", "pnodes": [{"memory_mib": 65536, "cpus": 8}], "distances": [[10]]},
    ).json()
    four = c.post(
        "/v1/hosts",
        json={
            "name": "four",
            "pnodes": [{"memory_mib": 8192, "cpus": 4}] * 4,
            "distances": slit(4, per_socket=2),
        },
    ).json()
    dom = c.post(
        "/v1/domains",
        json={
            "name": "vm",
            "host_id": one["id"],
            "policy": "faithful",
            "memory": {"dynamic_min_mib": 2048, "dynamic_max_mib": 8192, "target_mib": 8192},
            "vnodes": [
                {"size_mib": 2048, "vcpus": [v], "distances": row}
                for v, row in enumerate(slit(4, per_socket=2))
            ],
        },
    ).json()
    m = c.post("/v1/migrations", json={"domain_id": dom["id"], "destination_host_id": four["id"]})
    assert m.status_code == 201, m.text
    return one, four, m.json()["id"]


def ack_all(c: httpx.Client, host: dict[str, Any]) -> None:
    for s in c.get(
        f"/v1/agent/hosts/{host['id']}/steps",
        headers={"Authorization": f"Bearer {host['agent_token']}"},
    ).json()["items"]:
        c.post(
            f"/v1/agent/hosts/{host['id']}/steps/{s['id']}/ack",
            headers={"Authorization": f"Bearer {host['agent_token']}"},
            json={"ok": True},
        )


def test_killed_between_phases_then_advance_completes(server: Server, db_url: str) -> None:
    with api(server) as c:
        one, four, mid = setup_migration(c)
        assert c.post(f"/v1/migrations/{mid}/advance").json()["state"] == "preparing"
    server.kill()
    audit(db_url)
    server.start()
    with api(server) as c:
        state = "preparing"
        for _ in range(3):
            ack_all(c, one)
            ack_all(c, four)
            r = c.post(f"/v1/migrations/{mid}/advance")
            assert r.status_code == 200, r.text
            state = r.json()["state"]
        assert state == "completed"
    assert audit(db_url)["claims"] == 0


def test_killed_during_a_burst_of_requests_leaves_a_consistent_state(
    server: Server, db_url: str
) -> None:
    with api(server) as c:
        one, four, mid = setup_migration(c)
    stop = threading.Event()

    def hammer() -> None:
        with api(server) as c:
            while not stop.is_set():
                try:
                    ack_all(c, one)
                    c.post(f"/v1/migrations/{mid}/advance")
                    c.put(
                        f"/v1/agent/hosts/{one['id']}/observed",
                        headers={"Authorization": f"Bearer {one['agent_token']}"},
                        json={"pnodes": [{"index": 0, "free_mib": 1}]},
                    )
                except httpx.HTTPError:
                    return

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.4)
    server.kill()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    audit(db_url)
    server.start()
    with api(server) as c:
        m = c.get(f"/v1/migrations/{mid}").json()
        if m["state"] in ("planned", "preparing", "migrating"):
            # Killed mid-move, the VM still runs on the source: in `migrating` the abort must
            # say so (the service cannot know on its own which side the VM runs on).
            body = {"runs_on": "source"} if m["state"] == "migrating" else None
            r = c.post(f"/v1/migrations/{mid}/abort", json=body)
            assert r.status_code == 200 and r.json()["state"] == "aborted"
            assert audit(db_url)["claims"] == 0
        else:
            for _ in range(3):
                if m["state"] == "completed":
                    break
                ack_all(c, four)
                ack_all(c, one)
                m = c.post(f"/v1/migrations/{mid}/advance").json()
            assert m["state"] == "completed"
            assert audit(db_url)["claims"] == 0
