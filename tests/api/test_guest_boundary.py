"""The privilege boundary: what guests see, tokens at rest, rotation, and the agent API."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import String, Text, select

from service.db.base import Base
from tests.api.client import ApiClient
from tests.api.factories import domain_body

FORBIDDEN_KEY = re.compile(r"pnode|host|physical|backing|home|numa_node|domain", re.I)


def odd_slit(n: int) -> list[list[int]]:
    """Physical distances no virtual topology below uses (17, 28, 37...)."""
    return [
        [
            10 if i == j else 17 + 11 * ((i // 2) != (j // 2)) + 9 * ((i // 4) != (j // 4))
            for j in range(n)
        ]
        for i in range(n)
    ]


def walk(value: Any, path: str = "$") -> list[tuple[str, Any, Any]]:
    """(path, key, value) for every key at any depth, and every value."""
    out: list[tuple[str, Any, Any]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((f"{path}.{k}", k, v))
            out += walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append((f"{path}[{i}]", None, v))
            out += walk(v, f"{path}[{i}]")
    return out


@pytest.mark.parametrize("n_pnodes", [1, 2, 8, 16])
def test_no_guest_route_reveals_anything_physical(client: ApiClient, n_pnodes: int) -> None:
    pdist = odd_slit(n_pnodes)
    host = client.post(
        "/v1/hosts",
        json={
            "name": f"h{n_pnodes}",
            "pnodes": [{"memory_mib": 8192, "reserved_mib": 512, "cpus": 4}] * n_pnodes,
            "distances": pdist,
        },
    ).json()
    other_host = client.post(
        "/v1/hosts",
        json={
            "name": "other",
            "pnodes": [{"memory_mib": 8192, "cpus": 4}],
            "distances": [[10]],
        },
    ).json()
    k = min(4, 2 * n_pnodes)
    mine = client.post(
        "/v1/domains", json=domain_body("mine", [1024] * k, host_id=host["id"], far=20)
    ).json()
    other = client.post(
        "/v1/domains", json=domain_body("other", [1024], host_id=other_host["id"], far=20)
    ).json()
    # Pending plug/unplug operations, and a report, so every field is populated.
    client.put(f"/v1/domains/{mine['id']}/target", json={"target_mib": 1024 * k - 640})
    token = mine["guest_token"]
    responses = [
        client.get("/v1/guest/topology", token=token),
        client.get("/v1/guest/balloon", token=token),
        client.put(
            "/v1/guest/balloon", token=token, json={"vnodes": [{"index": 0, "actual_mib": 512}]}
        ),
        client.put(
            "/v1/guest/balloon", token=token, json={"vnodes": [{"index": 99, "actual_mib": 512}]}
        ),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 422]
    assert responses[1].json()["pending"], "the leak test must see pending operations"
    secrets = {host["id"], other_host["id"], mine["id"], other["id"]}
    rows = [tuple(r) for r in pdist] if n_pnodes > 1 else []
    for r in responses:
        body = r.json()
        assert body != pdist
        for path, key, value in walk(body):
            if key is not None:
                assert not FORBIDDEN_KEY.search(str(key)), f"{path}: key {key!r} leaks"
            assert not (isinstance(value, str) and any(s in value for s in secrets)), path
            if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
                assert tuple(value) not in rows, f"{path}: a row of the host's SLIT"
            assert value != pdist, f"{path}: the host's SLIT"


def test_tokens_are_never_stored_in_clear_and_rotation_revokes(client: ApiClient) -> None:
    host = client.post(
        "/v1/hosts",
        json={"name": "h", "pnodes": [{"memory_mib": 8192, "cpus": 4}], "distances": [[10]]},
    ).json()
    dom = client.post("/v1/domains", json=domain_body("d", [1024], host_id=host["id"])).json()
    new_agent = client.post(f"/v1/hosts/{host['id']}/agent-token").json()["agent_token"]
    new_guest = client.post(f"/v1/domains/{dom['id']}/guest-token").json()["guest_token"]
    issued = [host["agent_token"], dom["guest_token"], new_agent, new_guest]
    assert len(set(issued)) == 4 and all(len(t) >= 40 for t in issued)  # >= 128 random bits
    with client.app.state.sessionmaker() as s:
        for table in Base.metadata.sorted_tables:
            for row in s.execute(select(table)).all():
                text = repr(tuple(row))
                for t in issued:
                    assert t not in text and t[4:] not in text, f"token in clear in {table.name}"
    old_agent = client.get(f"/v1/agent/hosts/{host['id']}/steps", token=host["agent_token"])
    old_guest = client.get("/v1/guest/topology", token=dom["guest_token"])
    assert old_agent.status_code == old_guest.status_code == 401
    assert client.get(f"/v1/agent/hosts/{host['id']}/steps", token=new_agent).status_code == 200
    assert client.get("/v1/guest/topology", token=new_guest).status_code == 200
    client.delete(f"/v1/domains/{dom['id']}")
    assert client.get("/v1/guest/topology", token=new_guest).status_code == 401


def test_string_columns_hold_no_token_like_values(client: ApiClient) -> None:
    """Belt and braces: no text column anywhere holds an nbh_/nbg_ token."""
    host = client.post(
        "/v1/hosts",
        json={"name": "h", "pnodes": [{"memory_mib": 8192, "cpus": 4}], "distances": [[10]]},
        headers={"Idempotency-Key": "k"},
    ).json()
    client.post(
        "/v1/domains",
        json=domain_body("d", [1024], host_id=host["id"]),
        headers={"Idempotency-Key": "k"},
    )
    with client.app.state.sessionmaker() as s:
        for table in Base.metadata.sorted_tables:
            cols = [c for c in table.columns if isinstance(c.type, String | Text)]
            for col in cols:
                for (value,) in s.execute(select(col)).all():
                    assert not (isinstance(value, str) and re.match(r"nb[hg]_", value))
            for row in s.execute(select(table)).all():
                assert "nbh_" not in repr(tuple(row)) and "nbg_" not in repr(tuple(row))


def _host_with_domain(client: ApiClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """A host of two 8 GiB pnodes and a domain of two 2 GiB vnodes on it."""
    host = client.post(
        "/v1/hosts",
        json={
            "name": "h",
            "pnodes": [{"memory_mib": 8192, "cpus": 4}] * 2,
            "distances": [[10, 20], [20, 10]],
        },
    ).json()
    dom = client.post(
        "/v1/domains", json=domain_body("d", [2048, 2048], host_id=host["id"], far=20)
    ).json()
    return host, dom


def test_agent_reports_drift_and_acknowledges_steps(client: ApiClient) -> None:
    host, dom = _host_with_domain(client)
    agent = host["agent_token"]
    base = f"/v1/agent/hosts/{host['id']}"
    ok = client.put(
        f"{base}/observed",
        token=agent,
        json={"pnodes": [{"index": 0, "free_mib": 6144}, {"index": 1, "free_mib": 6100}]},
    )
    assert ok.status_code == 200 and not ok.json()["drift_flagged"]
    assert [p["drift_mib"] for p in ok.json()["pnodes"]] == [0, -44]
    drift = client.put(
        f"{base}/observed", token=agent, json={"pnodes": [{"index": 1, "free_mib": 1000}]}
    )
    assert drift.json()["drift_flagged"]
    actions = [e["action"] for e in client.get("/v1/events").json()["items"]]
    assert "host.drift_flagged" in actions
    assert (
        client.put(
            f"{base}/observed", token=agent, json={"pnodes": [{"index": 5, "free_mib": 1}]}
        ).status_code
        == 422
    )

    client.put(f"/v1/domains/{dom['id']}/target", json={"target_mib": 3072})
    steps = client.get(f"{base}/steps", token=agent).json()["items"]
    assert {(s["op"], s["vnode"], s["mib"]) for s in steps} == {
        ("unplug", 0, 512),
        ("unplug", 1, 512),
    }
    homes = [v["home_pnode"] for v in client.get(f"/v1/domains/{dom['id']}").json()["vnodes"]]
    assert all(s["pnode"] == homes[s["vnode"]] for s in steps)
    first = steps[0]
    r = client.post(f"{base}/steps/{first['id']}/ack", token=agent, json={"ok": True})
    assert r.status_code == 200 and r.json()["state"] == "acked"
    again = client.post(f"{base}/steps/{first['id']}/ack", token=agent, json={"ok": True})
    assert again.status_code == 200
    assert (
        client.post(f"{base}/steps/{first['id']}/ack", token=agent, json={"ok": False}).status_code
        == 409
    )
    left = client.get(f"{base}/steps", token=agent).json()["items"]
    assert [s["id"] for s in left] == [steps[1]["id"]]
    # The guest reporting the pool at its target completes the operation without an agent.
    vnode = steps[1]["vnode"]
    client.put(
        "/v1/guest/balloon",
        token=dom["guest_token"],
        json={"vnodes": [{"index": vnode, "actual_mib": 1536}]},
    )
    assert client.get(f"{base}/steps", token=agent).json()["items"] == []


def test_guest_sees_its_pending_operations_with_pfn_ranges(client: ApiClient) -> None:
    host = client.post(
        "/v1/hosts",
        json={"name": "h", "pnodes": [{"memory_mib": 8192, "cpus": 4}], "distances": [[10]]},
    ).json()
    dom = client.post("/v1/domains", json=domain_body("d", [2048], host_id=host["id"])).json()
    client.put(f"/v1/domains/{dom['id']}/target", json={"target_mib": 1024 + 64})
    view = client.get("/v1/guest/balloon", token=dom["guest_token"]).json()
    assert view["target_mib"] == 1088
    ops = [(p["op"], p["mib"], p["target_mib"]) for p in view["pending"]]
    assert ops == [("unplug", 896, 1152), ("balloon", 64, 1088)]
    assert view["pending"][0]["pfn_ranges"][0] == [1152 * 256, 1280 * 256]
    assert view["vnodes"] == [
        {"index": 0, "target_mib": 1088, "actual_mib": None, "plugged_blocks": 9}
    ]


def test_a_guest_report_above_a_vnodes_size_is_refused_located_and_changes_nothing(
    client: ApiClient,
) -> None:
    """A pool can never hold more than its vnode's span: such a report is nonsense, refused
    like the host agents' (issue #22, item 7), not silently capped."""
    _, dom = _host_with_domain(client)
    token = dom["guest_token"]
    before = client.get(f"/v1/domains/{dom['id']}").json()
    size = max(
        v["size_mib"] for v in client.get("/v1/guest/topology", token=token).json()["vnodes"]
    )
    r = client.put(
        "/v1/guest/balloon",
        token=token,
        json={"vnodes": [{"index": 0, "actual_mib": 1024}, {"index": 1, "actual_mib": size + 1}]},
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [
        {"loc": ["body", "vnodes", 1, "actual_mib"], "msg": f"above vnode 1's size of {size} MiB"}
    ]
    assert client.get(f"/v1/domains/{dom['id']}").json() == before
