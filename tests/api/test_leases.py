"""Host agents' leases (PUT /v1/agent/hosts/{id}/lease): renewal, what the answer asks for, and
what a lapse does, on two app instances (two workers) sharing one database and one fake clock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI

from numa_balloon_testing.clock import ManualClock as Clock
from service.app import create_app
from service.core.leases import sweep_leases
from service.settings import Settings
from tests.api.client import ApiClient, api_client
from tests.api.factories import domain_body, host_body
from tests.conftest import ADMIN_TOKEN

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
LEASE_S = 40


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def workers(db_url: str, clock: Clock) -> Iterator[tuple[ApiClient, ApiClient]]:
    """Two app instances on one database: what two uvicorn workers are to each other (each has
    its own engine, cluster feed, event hub and, on PostgreSQL, the plain connections its
    lifespan opens on its event loop, which renewals take). No background sweeper: the test
    sweeps."""
    settings = Settings(
        database_url=db_url, admin_token=ADMIN_TOKEN, sweep_interval_s=0, agent_lease_s=LEASE_S
    )
    apps: list[FastAPI] = [create_app(settings, clock=clock) for _ in range(2)]
    with api_client(apps[0], ADMIN_TOKEN) as a, api_client(apps[1], ADMIN_TOKEN) as b:
        for c in (a, b):
            c.call(c.app.state.db.plain.open)
        try:
            yield a, b
        finally:
            for c in (a, b):
                c.call(c.app.state.db.plain.close)
    for app in apps:
        app.state.engine.dispose()


def _lease(c: ApiClient, host: dict[str, Any], seq: int | None = None) -> Any:
    body = None if seq is None else {"seq": seq}
    r = c.put(f"/v1/agent/hosts/{host['id']}/lease", token=host["agent_token"], json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _events(c: ApiClient, host_id: str, kind: str) -> list[dict[str, Any]]:
    r = c.get("/v1/events", params={"since": 0, "subject_id": host_id, "kind": kind})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def _sweep_on_both(a: ApiClient, b: ApiClient, now: datetime) -> int:
    """Both workers' sweepers at once; returns how many hosts they marked lost between them."""
    found: list[int] = []

    def sweep(c: ApiClient) -> None:
        found.append(len(sweep_leases(c.app.state.db, now)))

    threads = [threading.Thread(target=sweep, args=(c,)) for c in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(found)


def _preview_hosts(c: ApiClient) -> set[str]:
    memory = {"dynamic_min_mib": 1024, "dynamic_max_mib": 2048, "target_mib": 2048}
    r = c.post("/v1/placements", json={"memory": memory, "vnode_count": 1, "vcpus": 2})
    assert r.status_code == 200, r.text
    return {p["host_id"] for p in r.json()["hosts"] if p["feasible"]}


def test_a_host_that_never_took_a_lease_is_not_judged(
    workers: tuple[ApiClient, ApiClient], clock: Clock
) -> None:
    a, b = workers
    host = a.post("/v1/hosts", json=host_body("quiet", n=2)).json()
    clock.advance(3600)
    assert _sweep_on_both(a, b, clock.now) == 0
    agent = b.get(f"/v1/hosts/{host['id']}").json()["agent"]
    assert agent == {"connected": None, "lease_expires_at": None, "last_report_at": None}
    assert host["id"] in _preview_hosts(b)


def test_the_answer_asks_for_a_report_when_the_service_needs_one(
    workers: tuple[ApiClient, ApiClient], clock: Clock
) -> None:
    a, b = workers
    host = a.post("/v1/hosts", json=host_body("kvm-1", n=2)).json()
    first = _lease(a, host, seq=0)
    assert first["report"] is True  # the first lease: nothing reported yet
    assert first["expires_at"] == (clock.now + timedelta(seconds=LEASE_S)).isoformat().replace(
        "+00:00", "Z"
    )
    assert first["steps_pending"] is False
    report = {"pnodes": [{"index": 0, "free_mib": 65536}, {"index": 1, "free_mib": 65536}]}
    r = a.post(f"/v1/agent/hosts/{host['id']}/report", token=host["agent_token"], json=report)
    assert r.status_code == 200, r.text
    clock.advance(10)
    assert _lease(b, host, seq=1)["report"] is False  # settled: only the lease
    clock.advance(10)
    assert _lease(a, host, seq=0)["report"] is True  # the agent restarted
    clock.advance(10)
    assert _lease(a, host, seq=1)["report"] is False
    clock.advance(300)
    assert _lease(a, host, seq=2)["report"] is True  # the full report is due
    shown = b.get(f"/v1/hosts/{host['id']}").json()["agent"]
    assert shown["connected"] is True
    assert shown["last_report_at"] is not None


def test_a_lapsed_lease_makes_the_agent_lost_and_a_renewal_brings_it_back(
    workers: tuple[ApiClient, ApiClient], clock: Clock
) -> None:
    a, b = workers
    host = a.post("/v1/hosts", json=host_body("kvm-1", n=2)).json()
    other = a.post("/v1/hosts", json=host_body("kvm-2", n=2)).json()
    dom = a.post("/v1/domains", json=domain_body("vm-1", [2048, 2048], host_id=host["id"])).json()
    _lease(a, host, seq=0)
    _lease(b, other, seq=0)
    assert {host["id"], other["id"]} <= _preview_hosts(a) | _preview_hosts(b)

    # The agent of `host` stops renewing; `other`'s goes on. Within the lease: still connected.
    clock.advance(LEASE_S - 1)
    _lease(b, other, seq=1)
    assert _sweep_on_both(a, b, clock.now) == 0
    clock.advance(2)
    _lease(a, other, seq=2)
    assert _sweep_on_both(a, b, clock.now) == 1  # two sweepers, one mark
    assert _sweep_on_both(a, b, clock.now) == 0  # and never again
    for c in (a, b):
        assert c.get(f"/v1/hosts/{host['id']}").json()["agent"]["connected"] is False
        assert c.get(f"/v1/hosts/{other['id']}").json()["agent"]["connected"] is True
        assert c.get(f"/v1/domains/{dom['id']}").json()["host_agent"] == "lost"
        listed = c.get("/v1/domains", params={"host_id": host["id"]}).json()["items"]
        assert [d["host_agent"] for d in listed] == ["lost"]
        # Placement on both workers (each its own cluster feed) leaves the lost host out.
        preview = _preview_hosts(c)
        assert host["id"] not in preview
        assert other["id"] in preview
    lost = _events(a, host["id"], "host.agent-lost")
    assert len(lost) == 1
    assert lost[0]["after"]["agent"] == "lost"
    pinned = b.post("/v1/domains", json=domain_body("vm-2", [1024], host_id=host["id"]))
    assert pinned.status_code == 409, pinned.text
    assert "agent is lost" in pinned.json()["detail"]
    unpinned = a.post("/v1/domains", json=domain_body("vm-3", [1024]))
    assert unpinned.status_code == 201, unpinned.text
    assert unpinned.json()["host_id"] == other["id"]
    move = {"domain_id": unpinned.json()["id"], "destination_host_id": host["id"]}
    for path in ("/v1/migrations", "/v1/migrations/plan"):
        refused = b.post(path, json={**move, "strategy": "replug"})
        assert refused.status_code == 409, refused.text
        assert "agent is lost" in refused.json()["detail"]

    # The agent comes back (on the other worker): connected again, one returned event, a full
    # report wanted, and placement may use the host again.
    clock.advance(30)
    back = _lease(b, host, seq=7)
    assert back["report"] is True
    _lease(a, host, seq=8)  # a second renewal: no second event
    assert len(_events(b, host["id"], "host.agent-returned")) == 1
    assert len(_events(b, host["id"], "host.agent-lost")) == 1
    for c in (a, b):
        assert c.get(f"/v1/hosts/{host['id']}").json()["agent"]["connected"] is True
        assert c.get(f"/v1/domains/{dom['id']}").json()["host_agent"] == "connected"
        assert host["id"] in _preview_hosts(c)
    again = b.post("/v1/domains", json=domain_body("vm-2", [1024], host_id=host["id"]))
    assert again.status_code == 201, again.text
    moved = a.post("/v1/migrations", json={**move, "strategy": "replug"})
    assert moved.status_code == 201, moved.text


def test_the_lease_refuses_other_hosts_tokens_and_bad_bodies(
    workers: tuple[ApiClient, ApiClient],
) -> None:
    a, _ = workers
    host = a.post("/v1/hosts", json=host_body("kvm-1", n=1)).json()
    other = a.post("/v1/hosts", json=host_body("kvm-2", n=1)).json()
    url = f"/v1/agent/hosts/{host['id']}/lease"
    assert a.put(url, token=other["agent_token"]).status_code == 403
    assert a.put(url, token=None).status_code == 401
    assert a.put(url).status_code == 403  # the admin token is not the agent's
    bad = a.put(url, token=host["agent_token"], json={"seq": -1})
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert a.put(url, token=host["agent_token"], json={"seq": 1, "x": 1}).status_code == 422
    assert a.put(url, token=host["agent_token"]).status_code == 200  # an empty body is fine


def test_with_protection_on_a_lost_agent_fails_its_host_over_to_a_connected_host(
    workers: tuple[ApiClient, ApiClient], clock: Clock
) -> None:
    """Issue 26's recovery on issue 25's trigger: protected domains of a host whose agent is
    lost restart elsewhere, never on a host whose agent is lost (though still active)."""
    a, b = workers
    src, dark, ok = (
        a.post("/v1/hosts", json=host_body(name, n=2)).json() for name in ("src", "dark", "ok")
    )
    protected = {**domain_body("vm-ha", [1024, 1024], host_id=src["id"]), "labels": {"ha": "true"}}
    dom = a.post("/v1/domains", json=protected).json()
    plain = a.post("/v1/domains", json=domain_body("vm-plain", [1024], host_id=src["id"])).json()
    # `dark` would be the planner's choice (the most free memory) were its agent not lost
    a.post("/v1/domains", json=domain_body("filler", [8192, 8192], host_id=ok["id"]))
    for host in (src, dark, ok):
        _lease(a, host, seq=0)
    clock.advance(30)
    _lease(b, src, seq=1)
    _lease(b, ok, seq=1)
    clock.advance(11)  # dark's agent lapses while protection is off: lost, its host still active
    assert _sweep_on_both(a, b, clock.now) == 1
    assert a.get(f"/v1/hosts/{dark['id']}").json()["state"] == "active"
    r = a.patch("/v1/cluster", json={"ha": {"host_failures": 1, "label_selector": "ha=true"}})
    assert r.status_code == 200, r.text
    clock.advance(30)  # now src's agent lapses too; ok's renews
    _lease(a, ok, seq=2)
    assert _sweep_on_both(a, b, clock.now) == 1

    for c in (a, b):
        failed = c.get(f"/v1/hosts/{src['id']}").json()
        assert failed["state"] == "offline"
        assert failed["recovery"]["reason"] == "its agent's lease lapsed"
        moved = c.get(f"/v1/domains/{dom['id']}").json()
        assert (moved["state"], moved["host_id"]) == ("restarting", ok["id"])
        assert c.get(f"/v1/domains/{plain['id']}").json()["host_id"] == src["id"]
    assert len(_events(a, src["id"], "host.failed")) == 1
    assert _sweep_on_both(a, b, clock.now) == 0  # nothing lapses twice, nothing moves twice
    assert a.get(f"/v1/domains/{dom['id']}").json()["host_id"] == ok["id"]
