"""Memory a migration may be using is never given away, whatever the clock does (issue: claims
that expired under a running migration). Driven on a fake clock, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI

from numa_balloon_testing.clock import ManualClock as Clock
from service.app import create_app
from service.db.invariants import audit
from service.settings import Settings
from tests.api.client import ApiClient, api_client
from tests.api.factories import domain_body, host_body
from tests.api.test_migrations import ack_phase
from tests.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.reliability


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 12, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def ttl_client(db_url: str, clock: Clock) -> Iterator[ApiClient]:
    settings = Settings(
        database_url=db_url, admin_token=ADMIN_TOKEN, claim_ttl_s=8, stuck_after_s=30
    )
    app: FastAPI = create_app(settings, clock=clock)
    with api_client(app, ADMIN_TOKEN) as c:
        yield c
    app.state.engine.dispose()


def _world(c: ApiClient) -> tuple[dict[str, Any], dict[str, Any], str]:
    src = c.post("/v1/hosts", json=host_body("src", n=1, memory_mib=16384)).json()
    dst = c.post("/v1/hosts", json=host_body("dst", n=1, memory_mib=4096)).json()
    body = domain_body("vm", [4096], dynamic_min_mib=4096, host_id=src["id"])
    did = c.post("/v1/domains", json=body).json()["id"]
    return src, dst, did


def _to_migrating(c: ApiClient, src: dict[str, Any], did: str, dst_id: str) -> str:
    r = c.post("/v1/migrations", json={"domain_id": did, "destination_host_id": dst_id})
    assert r.status_code == 201, r.text
    mid: str = r.json()["id"]
    assert c.post(f"/v1/migrations/{mid}/advance").json()["state"] == "preparing"
    ack_phase(c, src, "prepare", mid)
    assert c.post(f"/v1/migrations/{mid}/advance").json()["state"] == "migrating"
    return mid


def _heartbeat(c: ApiClient, host: dict[str, Any], free_mib: int) -> None:
    r = c.put(
        f"/v1/agent/hosts/{host['id']}/observed",
        json={"pnodes": [{"index": 0, "free_mib": free_mib}]},
        token=host["agent_token"],
    )
    assert r.status_code == 200, r.text


def test_a_running_migration_keeps_its_destination_memory_past_the_ttl(
    ttl_client: ApiClient, clock: Clock
) -> None:
    c = ttl_client
    src, dst, did = _world(c)
    mid = _to_migrating(c, src, did, dst["id"])
    # The source agent polls its migrate step for far longer than the TTL; both agents beat.
    for _ in range(12):
        clock.advance(5)
        steps = c.get(f"/v1/agent/hosts/{src['id']}/steps", token=src["agent_token"]).json()
        assert any(s["op"] == "migrate" for s in steps["items"])
        _heartbeat(c, src, 12288)
        _heartbeat(c, dst, 0)
    got = c.get(f"/v1/migrations/{mid}").json()
    assert got["state"] == "migrating" and sum(x["mib"] for x in got["claims"]) == 4096
    assert got["expires_at"] is None and all(x["expires_at"] is None for x in got["claims"])
    # No progress for 60 s > stuck_after_s: visibly stuck, with a reason and one event.
    assert got["stuck"] and "migrating" in got["stuck_reason"]
    events = c.get("/v1/events", params={"subject_id": mid}).json()["items"]
    assert [e["action"] for e in events].count("migration.stuck") == 1
    # The destination's memory is not free for anyone else.
    newcomer = c.post("/v1/domains", json=domain_body("newcomer", [1024], host_id=dst["id"]))
    assert newcomer.status_code == 409, newcomer.text
    acc = c.get(f"/v1/hosts/{dst['id']}/accounting").json()["pnodes"][0]
    assert acc["claimed_mib"] == 4096 and acc["free_mib"] == 0
    # The live migration finishes: the ack is progress, and the migration completes there.
    assert ack_phase(c, src, "migrate", mid) == 1
    done = c.post(f"/v1/migrations/{mid}/advance").json()
    assert done["state"] == "settling" and not done["stuck"]
    assert c.get(f"/v1/domains/{did}").json()["host_id"] == dst["id"]
    audit(c.app.state.sessionmaker)


def test_a_planned_migration_still_expires(ttl_client: ApiClient, clock: Clock) -> None:
    c = ttl_client
    _, dst, did = _world(c)
    mid = c.post("/v1/migrations", json={"domain_id": did, "destination_host_id": dst["id"]})
    mid = mid.json()["id"]
    clock.advance(9)
    # Shown failed at read time, before any sweep wrote it; its claims no longer count.
    shown = c.get(f"/v1/migrations/{mid}").json()
    assert shown["state"] == "failed" and shown["claims"] == []
    acc = c.get(f"/v1/hosts/{dst['id']}/accounting").json()["pnodes"][0]
    assert acc["claimed_mib"] == 0 and acc["free_mib"] == 4096
    assert (
        c.post("/v1/domains", json=domain_body("y", [1024], host_id=dst["id"])).status_code == 201
    )
    _heartbeat(c, dst, 3072)  # the sweep writes it down
    assert c.get(f"/v1/migrations/{mid}").json()["reason"] == "claims expired"
    audit(c.app.state.sessionmaker)


@pytest.mark.parametrize("runs_on", ["source", "destination"])
def test_abort_after_migrate_may_have_run_asks_where_the_domain_runs(
    ttl_client: ApiClient, runs_on: str
) -> None:
    c = ttl_client
    src, dst, did = _world(c)
    mid = _to_migrating(c, src, did, dst["id"])
    refused = c.post(f"/v1/migrations/{mid}/abort")
    assert refused.status_code == 409 and refused.json()["options"] == ["source", "destination"]
    r = c.post(f"/v1/migrations/{mid}/abort", json={"runs_on": runs_on})
    assert r.status_code == 200, r.text
    host = src if runs_on == "source" else dst
    assert r.json()["state"] == ("aborted" if runs_on == "source" else "settling")
    assert c.get(f"/v1/domains/{did}").json()["host_id"] == host["id"]
    audit(c.app.state.sessionmaker)


def test_a_failed_migrate_step_rolls_back_to_the_source_at_once(ttl_client: ApiClient) -> None:
    """The source agent says the live migration failed: the domain is still on the source, so
    the migration fails there and then, and the destination's claims are released."""
    c = ttl_client
    src, dst, did = _world(c)
    mid = _to_migrating(c, src, did, dst["id"])
    steps = c.get(f"/v1/agent/hosts/{src['id']}/steps", token=src["agent_token"]).json()["items"]
    migrate = next(s for s in steps if s["op"] == "migrate")
    r = c.post(
        f"/v1/agent/hosts/{src['id']}/steps/{migrate['id']}/ack",
        json={"ok": False, "detail": "virDomainMigrate: connection refused"},
        token=src["agent_token"],
    )
    assert r.status_code == 200, r.text
    got = c.get(f"/v1/migrations/{mid}").json()
    assert got["state"] == "failed" and got["claims"] == []
    assert c.get(f"/v1/domains/{did}").json()["host_id"] == src["id"]
    audit(c.app.state.sessionmaker)
