"""Who completes each step, auto-advance, and failed steps ending their migration at once."""

from __future__ import annotations

from typing import Any

from service.db.invariants import audit
from tests.api.client import ApiClient
from tests.api.test_migrations import seed_cluster


def _do_pending(
    client: ApiClient, migration: dict[str, Any], hosts: dict[str, dict[str, Any]], guest: str
) -> int:
    """Play every pending step the way its actor would: guests report, agents ack."""
    pending = [s for s in migration["steps"] if s["state"] == "pending"]
    pools: dict[int, int] = {}
    for s in pending:
        if s["actor"] == "guest":
            pools[s["vnode"]] = s["target_mib"]
        else:
            assert s["actor"] == "agent"
            host = hosts[s["host_id"]]
            r = client.post(
                f"/v1/agent/hosts/{host['id']}/steps/{s['id']}/ack",
                token=host["agent_token"],
                json={"ok": True},
            )
            assert r.status_code == 200, r.text
    if pools:
        r = client.put(
            "/v1/guest/balloon",
            token=guest,
            json={"vnodes": [{"index": v, "actual_mib": t} for v, t in pools.items()]},
        )
        assert r.status_code == 200, r.text
    return len(pending)


def test_auto_advance_needs_no_advance_call(client: ApiClient) -> None:
    one, sixteen, guest = seed_cluster(client)
    hosts = {one["id"]: one, sixteen["id"]: sixteen}
    body = {
        "domain_id": guest["id"],
        "destination_host_id": sixteen["id"],
        "strategy": "replug",
        "auto_advance": True,
    }
    created = client.post("/v1/migrations", json=body)
    assert created.status_code == 201, created.text
    mid = created.json()["id"]
    m = client.get(f"/v1/migrations/{mid}").json()
    assert m["auto_advance"] is True
    assert m["state"] == "preparing"  # planned -> preparing happened on its own
    assert {s["actor"] for s in m["steps"]} == {"service", "guest", "agent"}
    assert all(s["actor"] == "service" for s in m["steps"] if s["op"] == "claim")
    seen = []
    for _ in range(10):
        seen.append(m["state"])
        if m["state"] == "completed":
            break
        assert _do_pending(client, m, hosts, guest["guest_token"]) > 0, m["state"]
        m = client.get(f"/v1/migrations/{mid}").json()
    assert seen == ["preparing", "migrating", "settling", "completed"]
    events = client.get("/v1/events", params={"subject_id": mid}).json()["items"]
    advanced = [e for e in events if e["action"] == "migration.advanced"]
    assert [e["actor"] for e in advanced] == ["service"] * 4
    assert client.get(f"/v1/domains/{guest['id']}").json()["host_id"] == sixteen["id"]
    audit(client.app.state.sessionmaker)


def test_advance_409_says_who_must_act_where(client: ApiClient) -> None:
    one, sixteen, guest = seed_cluster(client)
    body = {"domain_id": guest["id"], "destination_host_id": sixteen["id"], "strategy": "replug"}
    mid = client.post("/v1/migrations", json=body).json()["id"]
    first = client.post(f"/v1/migrations/{mid}/advance")
    assert first.status_code == 200 and first.json()["state"] == "preparing"
    blocked = client.post(f"/v1/migrations/{mid}/advance")
    assert blocked.status_code == 409
    problem = blocked.json()
    assert problem["pending"], problem
    for p in problem["pending"]:
        assert p["actor"] == "guest" and p["host_id"] == one["id"]
        assert p["op"] in ("balloon", "unplug") and isinstance(p["vnode"], int)
    assert "by the guest on host" in problem["detail"]
    assert len(problem["pending_steps"]) == len(problem["pending"])


def test_a_failed_ack_fails_the_migration_at_once(client: ApiClient) -> None:
    one, sixteen, guest = seed_cluster(client)
    body = {"domain_id": guest["id"], "destination_host_id": sixteen["id"], "strategy": "replug"}
    mid = client.post("/v1/migrations", json=body).json()["id"]
    client.post(f"/v1/migrations/{mid}/advance")
    step = next(
        s for s in client.get(f"/v1/migrations/{mid}").json()["steps"] if s["state"] == "pending"
    )
    r = client.post(
        f"/v1/agent/hosts/{one['id']}/steps/{step['id']}/ack",
        token=one["agent_token"],
        json={"ok": False, "detail": "virtio-mem refused to unplug"},
    )
    assert r.status_code == 200, r.text
    m = client.get(f"/v1/migrations/{mid}").json()
    assert m["state"] == "failed"
    assert "virtio-mem refused to unplug" in m["reason"]
    assert m["claims"] == []
    events = client.get("/v1/events", params={"subject_id": mid}).json()["items"]
    assert events[-1]["action"] == "migration.failed"
    assert client.get(f"/v1/domains/{guest['id']}").json()["state"] == "running"
    audit(client.app.state.sessionmaker)
