"""Migration between NUMA topologies over HTTP: the seed thread's scenario end to end."""

from __future__ import annotations

from typing import Any

import pytest

from service.db.invariants import audit
from tests.api.client import ApiClient
from tests.api.factories import slit
from tests.api.statements import count_statements


def mk_host(
    client: ApiClient, name: str, n: int, memory_mib: int, per_socket: int = 4, far: int = 32
) -> dict[str, Any]:
    r = client.post(
        "/v1/hosts",
        json={
            "name": name,
            "pnodes": [{"memory_mib": memory_mib, "reserved_mib": 0, "cpus": 4}] * n,
            "distances": slit(n, per_socket=per_socket, near=12, far=far),
        },
    )
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def seed_cluster(client: ApiClient) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A 1-node host and a 16-node host (4 sockets x 4 SNC nodes); a worst-case guest on the
    1-node host."""
    one = mk_host(client, "one-node", 1, 65536)
    sixteen = mk_host(client, "sixteen-node", 16, 4096)
    tpl = client.post("/v1/cluster/worst-case-template").json()
    assert tpl["vnode_count"] == 16
    guest = client.post(
        "/v1/domains",
        json={
            "name": "guest",
            "template": "worst-case",
            "vcpus": 16,
            "host_id": one["id"],
            "policy": "faithful",
            "memory": {"dynamic_min_mib": 4096, "dynamic_max_mib": 16384, "target_mib": 8192},
        },
    )
    assert guest.status_code == 201, guest.text
    return one, sixteen, guest.json()


def ack_phase(client: ApiClient, host: dict[str, Any], phase: str, migration_id: str) -> int:
    steps = client.get(f"/v1/agent/hosts/{host['id']}/steps", token=host["agent_token"])
    mine = [
        s
        for s in steps.json()["items"]
        if s["migration_id"] == migration_id and s["phase"] == phase
    ]
    for s in mine:
        r = client.post(
            f"/v1/agent/hosts/{host['id']}/steps/{s['id']}/ack",
            token=host["agent_token"],
            json={"ok": True, "detail": "done"},
        )
        assert r.status_code == 200, r.text
    return len(mine)


@pytest.mark.parametrize("strategy", ["rebalance", "replug"])
def test_seed_guest_moves_from_the_1_node_host_to_the_16_node_host(
    client: ApiClient, strategy: str
) -> None:
    one, sixteen, guest = seed_cluster(client)
    body = {"domain_id": guest["id"], "destination_host_id": sixteen["id"], "strategy": strategy}
    plan = client.post("/v1/migrations/plan", json=body)
    assert plan.status_code == 200, plan.text
    p = plan.json()
    assert p["feasible"] and p["distortion_after"] < p["distortion_before"]
    assert [s["phase"] for s in p["steps"]] == sorted(
        [s["phase"] for s in p["steps"]],
        key=["claim", "prepare", "migrate", "settle", "release"].index,
    )
    audit(client.app.state.sessionmaker)  # a plan reserves nothing
    assert (
        client.get(f"/v1/hosts/{sixteen['id']}/accounting").json()["pnodes"][0]["claimed_mib"] == 0
    )

    r = client.post("/v1/migrations", json=body)
    assert r.status_code == 201, r.text
    m = r.json()
    assert m["state"] == "planned" and sum(c["mib"] for c in m["claims"]) == sum(p["claims_mib"])
    audit(client.app.state.sessionmaker)
    acc = client.get(f"/v1/hosts/{sixteen['id']}/accounting").json()
    assert sum(x["claimed_mib"] for x in acc["pnodes"]) == sum(p["claims_mib"])
    # One migration at a time.
    assert client.post("/v1/migrations", json=body).status_code == 409
    assert (
        client.put(f"/v1/domains/{guest['id']}/target", json={"target_mib": 8192}).status_code
        == 409
    )

    url = f"/v1/migrations/{m['id']}"
    assert client.post(f"{url}/advance").json()["state"] == "preparing"
    # Mid-migration the placement is not whole (the prepare phase lowered the targets, the
    # backing still carries the memory): the export says so with a 409, never a 500.
    exported = client.get(f"/v1/domains/{guest['id']}/export", params={"format": "xl"})
    assert exported.status_code == 409, exported.text
    assert "while the domain is migrating" in exported.json()["detail"]
    # The guest sees its pending pool operations, never a host or pnode.
    view = client.get("/v1/guest/balloon", token=guest["guest_token"]).json()
    if strategy == "replug":
        assert view["pending"] and any(o["op"] == "unplug" for o in view["pending"])
    assert "pnode" not in str(view) and "host" not in str(view)
    n_prepare = ack_phase(client, one, "prepare", m["id"])
    blocked = client.post(f"{url}/advance")
    assert blocked.status_code == 200 and blocked.json()["state"] == "migrating"
    early = client.post(f"{url}/advance")
    assert early.status_code == 409 and early.json()["pending_steps"]
    # The text names hosts as people know them (issue #22, item 9), the ids stay in `pending`.
    assert "on host one-node" in early.json()["detail"]
    assert one["id"] not in early.json()["detail"] and sixteen["id"] not in early.json()["detail"]
    assert ack_phase(client, one, "migrate", m["id"]) == 1
    assert client.post(f"{url}/advance").json()["state"] == "settling"
    audit(client.app.state.sessionmaker)
    assert client.post(f"{url}/abort").status_code == 409  # it already runs on the destination
    ack_phase(client, sixteen, "settle", m["id"])
    done = client.post(f"{url}/advance").json()
    assert done["state"] == "completed"
    ack_phase(client, one, "release", m["id"])
    audit(client.app.state.sessionmaker)

    moved = client.get(f"/v1/domains/{guest['id']}").json()
    assert moved["host_id"] == sixteen["id"] and moved["state"] == "running"
    assert moved["memory"]["target_mib"] == p["target_after_mib"]
    assert [sum(v["backing_mib"]) for v in moved["vnodes"]] == [sum(r) for r in p["backing_after"]]
    src = client.get(f"/v1/hosts/{one['id']}/accounting").json()
    assert src["pnodes"][0]["allocated_mib"] == 0 and src["domains"] == []
    dst = client.get(f"/v1/hosts/{sixteen['id']}/accounting").json()
    assert sum(x["allocated_mib"] for x in dst["pnodes"]) == p["target_after_mib"]
    assert sum(x["claimed_mib"] for x in dst["pnodes"]) == 0
    assert n_prepare == sum(1 for s in p["steps"] if s["phase"] == "prepare")
    actions = [
        e["action"]
        for e in client.get("/v1/events", params={"subject_id": m["id"]}).json()["items"]
    ]
    assert actions == ["migration.created"] + ["migration.advanced"] * 4


def test_abort_restores_the_source_and_releases_the_claims(client: ApiClient) -> None:
    one, sixteen, guest = seed_cluster(client)
    before_src = client.get(f"/v1/hosts/{one['id']}/accounting").json()
    before_dst = client.get(f"/v1/hosts/{sixteen['id']}/accounting").json()
    m = client.post(
        "/v1/migrations",
        json={"domain_id": guest["id"], "destination_host_id": sixteen["id"], "strategy": "replug"},
    ).json()
    url = f"/v1/migrations/{m['id']}"
    client.post(f"{url}/advance")
    ack_phase(client, one, "prepare", m["id"])
    client.post(f"{url}/advance")
    # In `migrating` the live migration may have run: the service will not assume the source.
    r = client.post(f"{url}/abort")
    assert r.status_code == 409 and "runs_on" in r.json()["detail"], r.text
    assert client.get(url).json()["claims"], "claims stay held until someone says"
    r = client.post(f"{url}/abort", json={"runs_on": "source"})
    assert r.status_code == 200 and r.json()["state"] == "aborted"
    assert client.get(f"/v1/hosts/{one['id']}/accounting").json() == before_src
    assert client.get(f"/v1/hosts/{sixteen['id']}/accounting").json() == before_dst
    dom = client.get(f"/v1/domains/{guest['id']}").json()
    assert dom["state"] == "running" and dom["host_id"] == one["id"]
    assert dom["memory"]["target_mib"] == 8192
    # The guest is asked to grow its pools back; the migration's own steps are cancelled.
    steps = client.get(f"/v1/agent/hosts/{one['id']}/steps", token=one["agent_token"]).json()
    assert all(s["migration_id"] is None for s in steps["items"])
    assert client.post(f"{url}/abort").status_code == 409
    audit(client.app.state.sessionmaker)


def test_destination_too_small_shrinks_toward_dynamic_min_or_refuses(client: ApiClient) -> None:
    one, _, guest = seed_cluster(client)
    small = mk_host(client, "small", 2, 3072, per_socket=1, far=21)
    p = client.post(
        "/v1/migrations/plan", json={"domain_id": guest["id"], "destination_host_id": small["id"]}
    ).json()
    assert p["feasible"] and p["target_after_mib"] == 6144 < p["target_before_mib"] == 8192
    tiny = mk_host(client, "tiny", 1, 2048, per_socket=1)
    p = client.post(
        "/v1/migrations/plan", json={"domain_id": guest["id"], "destination_host_id": tiny["id"]}
    ).json()
    assert not p["feasible"] and "4096" in p["reason"] and p["steps"] == []
    r = client.post(
        "/v1/migrations", json={"domain_id": guest["id"], "destination_host_id": tiny["id"]}
    )
    assert r.status_code == 409
    same = client.post(
        "/v1/migrations/plan", json={"domain_id": guest["id"], "destination_host_id": one["id"]}
    )
    assert same.status_code == 422


def test_expired_claims_fail_the_migration_and_free_the_memory(client: ApiClient) -> None:
    _, sixteen, guest = seed_cluster(client)
    m = client.post(
        "/v1/migrations", json={"domain_id": guest["id"], "destination_host_id": sixteen["id"]}
    ).json()
    with client.app.state.sessionmaker() as s:
        from datetime import timedelta

        from service.db.models import Migration

        row = s.get(Migration, m["id"])
        assert row is not None
        row.expires_at = row.expires_at - timedelta(days=1)
        s.commit()
    r = client.post(f"/v1/migrations/{m['id']}/advance")
    assert r.status_code == 200 and r.json()["state"] == "failed"
    assert r.json()["reason"] == "claims expired" and r.json()["claims"] == []
    acc = client.get(f"/v1/hosts/{sixteen['id']}/accounting").json()
    assert sum(x["claimed_mib"] for x in acc["pnodes"]) == 0
    assert client.get(f"/v1/domains/{guest['id']}").json()["state"] == "running"
    audit(client.app.state.sessionmaker)


def test_rebalance_brings_remote_memory_home(client: ApiClient) -> None:
    host = mk_host(client, "two", 2, 3072, per_socket=1, far=21)
    fillers = [
        client.post(
            "/v1/domains",
            json={
                "name": f"filler{i}",
                "host_id": host["id"],
                "memory": {"dynamic_min_mib": 1024, "dynamic_max_mib": 2048, "target_mib": 2048},
                "vnodes": [{"size_mib": 2048, "vcpus": [0], "distances": [10]}],
            },
        ).json()
        for i in range(2)
    ]
    assert sorted(f["vnodes"][0]["home_pnode"] for f in fillers) == [0, 1]
    # 1 GiB free on each pnode: a 2 GiB vnode has to spread over both.
    vm = client.post(
        "/v1/domains",
        json={
            "name": "vm",
            "host_id": host["id"],
            "memory": {"dynamic_min_mib": 1024, "dynamic_max_mib": 2048, "target_mib": 2048},
            "vnodes": [{"size_mib": 2048, "vcpus": [0, 1], "distances": [10]}],
        },
    ).json()
    spread = vm["vnodes"][0]["backing_mib"]
    assert spread == [1024, 1024], spread
    home = vm["vnodes"][0]["home_pnode"]
    # The filler on the vm's home pnode shrinks; rebalance brings the remote GiB home.
    local = next(f for f in fillers if f["vnodes"][0]["home_pnode"] == home)
    client.put(f"/v1/domains/{local['id']}/target", json={"target_mib": 1024})
    url = f"/v1/hosts/{host['id']}/rebalance"
    dry = client.post(url, json={"budget_mib": 4096, "dry_run": True}).json()
    assert dry["moves"] and dry["distortion_after"] < dry["distortion_before"]
    assert dry["remote_fraction_after"] < dry["remote_fraction_before"]
    assert dry["moved_mib"] == 1024
    assert client.get(f"/v1/domains/{vm['id']}").json()["vnodes"][0]["backing_mib"] == spread
    real = client.post(url, json={"budget_mib": 4096})
    assert real.status_code == 200 and real.json()["moves"] == dry["moves"]
    after = client.get(f"/v1/domains/{vm['id']}").json()["vnodes"][0]
    assert after["backing_mib"][home] == 2048
    steps = client.get(f"/v1/agent/hosts/{host['id']}/steps", token=host["agent_token"]).json()
    moves = [(s["op"], s["pnode"]) for s in steps["items"] if s["phase"] == "rebalance"]
    assert moves == [("unplug", 1 - home), ("plug", home)]
    none = client.post(url, json={"budget_mib": 4096, "dry_run": True}).json()
    assert none["moves"] == []
    audit(client.app.state.sessionmaker)


def test_migrations_list_pages_and_filters(client: ApiClient) -> None:
    one, sixteen, guest = seed_cluster(client)
    body = {"domain_id": guest["id"], "destination_host_id": sixteen["id"]}
    first = client.post("/v1/migrations", json=body).json()
    assert client.post(f"/v1/migrations/{first['id']}/abort").status_code == 200
    n_one = count_statements(client, lambda: client.get("/v1/migrations"))[0]
    second = client.post("/v1/migrations", json=body).json()
    n_two = count_statements(client, lambda: client.get("/v1/migrations"))[0]
    assert n_one == n_two  # claims of the whole page in one statement, not one per migration
    page = client.get("/v1/migrations", params={"limit": 1}).json()
    assert [m["id"] for m in page["items"]] == [first["id"]] and page["next_cursor"]
    rest = client.get("/v1/migrations", params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert [m["id"] for m in rest["items"]] == [second["id"]] and rest["next_cursor"] is None
    aborted = client.get("/v1/migrations", params={"state": "aborted"}).json()["items"]
    assert [m["id"] for m in aborted] == [first["id"]]
    mine = client.get("/v1/migrations", params={"domain_id": guest["id"]}).json()["items"]
    assert len(mine) == 2
    assert client.get("/v1/migrations", params={"domain_id": one["id"]}).json()["items"] == []
