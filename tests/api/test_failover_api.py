"""Failover plan, protection and recovery through the API (issue 26), on both backends.

Small clusters whose answers are obvious by hand: three hosts of two 16 GiB pnodes; domains
pinned where the test wants them, protected by the label ha=true.
"""

from __future__ import annotations

from typing import Any

from service.db.invariants import audit
from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body

GIB = 1024


def _hosts(client: ApiClient, n: int = 3, memory_mib: int = 16 * GIB) -> list[str]:
    out = []
    for i in range(n):
        r = client.post("/v1/hosts", json=host_body(f"h{i}", n=2, memory_mib=memory_mib))
        assert r.status_code == 201, r.text
        out.append(str(r.json()["id"]))
    return out


def _domain(
    client: ApiClient,
    name: str,
    sizes: list[int],
    host_id: str,
    *,
    ha: bool = True,
    query: str = "",
    status: int = 201,
) -> dict[str, Any]:
    body = domain_body(name, sizes, host_id=host_id, dynamic_min_mib=sum(sizes))
    if ha:
        body["labels"] = {"ha": "true"}
    r = client.post(f"/v1/domains{query}", json=body)
    assert r.status_code == status, r.text
    out: dict[str, Any] = r.json()
    return out


def _plan(client: ApiClient, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/cluster/failover-plan", json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_plan_of_an_empty_selection_is_tolerated(client: ApiClient) -> None:
    _hosts(client)
    out = _plan(client, label_selector="ha=true")
    assert out["tolerated"] is True
    assert out["protected_domains"] == 0
    assert out["restarts"] == []


def test_plan_restarts_each_protected_domain_on_another_host(client: ApiClient) -> None:
    hosts = _hosts(client)
    a = _domain(client, "a", [8 * GIB, 8 * GIB], hosts[0])
    _domain(client, "b", [4 * GIB], hosts[1])
    _domain(client, "plain", [2 * GIB], hosts[2], ha=False)
    out = _plan(client, host_failures=1, label_selector="ha=true")
    assert out["tolerated"] is True and out["exact"] is True
    assert out["protected_domains"] == 2
    assert out["max_host_failures"] >= 1
    by_dom = {r["domain_id"]: r for r in out["restarts"]}
    assert set(by_dom) == {a["id"], next(iter(set(by_dom) - {a["id"]}))}
    ra = by_dom[a["id"]]
    assert ra["failed_host_id"] == hosts[0] and ra["host_id"] != hosts[0]
    assert sorted(v["vnode"] for v in ra["vnodes"]) == [0, 1]
    # the whole cluster, r = 1: the unprotected domain counts too
    assert _plan(client)["protected_domains"] == 3


def test_total_memory_suffices_but_no_pnode_holds_the_vnode(client: ApiClient) -> None:
    """Two hosts with 2 x 16 GiB; a 12 GiB vnode on each pnode of the other host leaves 4 GiB
    per pnode there (8 GiB in all): a 6 GiB vnode fits the total, no pnode."""
    hosts = _hosts(client, n=2)
    _domain(client, "big", [6 * GIB], hosts[0])
    for p in range(2):
        _domain(client, f"fill{p}", [12 * GIB], hosts[1], ha=False)
    out = _plan(client, host_failures=1, label_selector="ha=true")
    assert out["tolerated"] is False
    (u,) = out["worst"]["unplaced"]
    assert u["domain_name"] == "big"
    assert "MiB" in u["reason"]
    assert out["worst"]["failed_host_ids"] == [hosts[0]]


def test_bad_selector_and_r_are_located_problems(client: ApiClient) -> None:
    _hosts(client, n=2)
    r = client.post("/v1/cluster/failover-plan", json={"label_selector": "ha"})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["loc"] == ["body", "label_selector"]
    r = client.post("/v1/cluster/failover-plan", json={"host_failures": 3})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "host_failures"]
    r = client.post("/v1/cluster/failover-plan", json={"host_failures": -1})
    assert r.status_code == 422


def _protect(client: ApiClient, r: int = 1, selector: str | None = "ha=true") -> dict[str, Any]:
    resp = client.patch(
        "/v1/cluster", json={"ha": {"host_failures": r, "label_selector": selector}}
    )
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


def _events(client: ApiClient, action: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get("/v1/events?limit=500").json()["items"]
    return [e for e in items if e["action"] == action]


def _refused(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 409, resp.text
    body: dict[str, Any] = resp.json()
    assert body["type"].endswith("/problems/would-break-failover-plan")
    return body


def test_protection_is_shown_and_turned_off(client: ApiClient) -> None:
    hosts = _hosts(client, n=2)
    assert client.get("/v1/cluster").json()["ha"] is None
    _domain(client, "a", [8 * GIB], hosts[0])
    ha = _protect(client)["ha"]
    assert ha["holds"] is True and ha["overcommitted"] is False
    assert ha["protected_domains"] == 1 and ha["host_failures"] == 1
    assert client.get("/v1/cluster").json()["ha"]["holds"] is True
    r = client.patch("/v1/cluster", json={"ha": None})
    assert r.status_code == 200 and r.json()["ha"] is None
    bad = client.patch("/v1/cluster", json={"ha": {"label_selector": "=x"}})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["body", "ha", "label_selector"]


def test_create_that_breaks_the_plan_is_refused_unless_overcommitted(client: ApiClient) -> None:
    hosts = _hosts(client, n=2)
    _domain(client, "a", [8 * GIB, 8 * GIB], hosts[0])
    _protect(client)
    # b on h1: if h1 fails, b's 12 GiB vnode needs a pnode of h0 with 12 GiB: both have 8
    # (if h0 fails, a's two 8 GiB vnodes share h1's free pnode)
    body = _refused(
        client.post(
            "/v1/domains",
            json={
                **domain_body("b", [12 * GIB], host_id=hosts[1], dynamic_min_mib=12 * GIB),
                "labels": {"ha": "true"},
            },
        )
    )
    assert body["failed_host_ids"] == [hosts[1]]
    assert [s["domain_name"] for s in body["stranded"]] == ["b"]
    assert "b" in body["detail"]
    assert client.get("/v1/domains?name=b").json()["items"] == []  # nothing was created
    # an unprotected domain of the same size breaks nothing
    _domain(client, "c", [2 * GIB], hosts[1], ha=False)
    b = _domain(client, "b", [12 * GIB], hosts[1], query="?ha_overcommit=true")
    (ev,) = _events(client, "cluster.ha_overcommitted")
    assert ev["subject_id"] == b["id"] and ev["after"]["failed_host_ids"] == [hosts[1]]
    ha = client.get("/v1/cluster").json()["ha"]
    assert ha["holds"] is False and ha["overcommitted"] is True
    assert [s["domain_name"] for s in ha["stranded"]] == ["b"]
    # already broken: the next change is not refused; deleting b makes the plan hold again
    _domain(client, "d", [1 * GIB], hosts[0])
    assert client.delete(f"/v1/domains/{b['id']}").status_code == 204
    _domain(client, "e", [1 * GIB], hosts[0])
    assert _events(client, "cluster.ha_restored")
    assert client.get("/v1/cluster").json()["ha"]["overcommitted"] is False


def test_overcommit_needs_operator_or_admin(client: ApiClient) -> None:
    hosts = _hosts(client, n=2)
    key = client.post("/v1/api-keys", json={"name": "sched", "role": "scheduler"}).json()
    body = domain_body("x", [1024], host_id=hosts[0])
    r = client.post("/v1/domains?ha_overcommit=true", json=body, token=key["secret"])
    assert r.status_code == 403, r.text
    assert client.post("/v1/domains", json=body, token=key["secret"]).status_code == 201


def test_maintenance_that_leaves_no_survivor_is_refused(client: ApiClient) -> None:
    hosts = _hosts(client, n=3)
    _domain(client, "a", [8 * GIB], hosts[0])
    _protect(client)
    r = client.patch(f"/v1/hosts/{hosts[1]}", json={"state": "maintenance"})
    assert r.status_code == 200, r.text
    body = _refused(client.patch(f"/v1/hosts/{hosts[2]}", json={"state": "maintenance"}))
    assert body["failed_host_ids"] == [hosts[0]]
    assert "no eligible survivor" in body["stranded"][0]["reason"]
    assert client.get(f"/v1/hosts/{hosts[2]}").json()["state"] == "active"
    r = client.patch(f"/v1/hosts/{hosts[2]}?ha_overcommit=true", json={"state": "maintenance"})
    assert r.status_code == 200, r.text


def test_target_increase_that_breaks_the_plan(client: ApiClient) -> None:
    hosts = _hosts(client, n=2)
    # a protected 2 x 8 GiB domain at 8 GiB (4 GiB a vnode) on h0; h1 has 6 GiB free a pnode
    body = domain_body("a", [8 * GIB, 8 * GIB], host_id=hosts[0], target_mib=8 * GIB)
    body["memory"]["dynamic_min_mib"] = 8 * GIB
    body["labels"] = {"ha": "true"}
    a = client.post("/v1/domains", json=body).json()
    _domain(client, "fill", [10 * GIB, 10 * GIB], hosts[1], ha=False)
    _protect(client)
    # at 16 GiB each vnode restarts with 8 GiB: no pnode of h1 has it
    body = _refused(client.put(f"/v1/domains/{a['id']}/target", json={"target_mib": 16 * GIB}))
    assert body["failed_host_ids"] == [hosts[0]]
    assert client.get(f"/v1/domains/{a['id']}").json()["memory"]["target_mib"] == 8 * GIB
    r = client.put(f"/v1/domains/{a['id']}/target", json={"target_mib": 10 * GIB})
    assert r.status_code == 200, r.text  # 5 GiB a vnode still restarts on h1
    r = client.put(f"/v1/domains/{a['id']}/target", json={"target_mib": 8 * GIB})
    assert r.status_code == 200, r.text  # lowering never breaks a plan that holds


def test_migration_start_that_breaks_the_plan(client: ApiClient) -> None:
    hosts = _hosts(client, n=3)
    _domain(client, "a", [8 * GIB], hosts[0])  # restarts on h1 only (h2 is full)
    v = _domain(client, "v", [12 * GIB], hosts[0], ha=False)
    _domain(client, "u", [12 * GIB], hosts[1], ha=False)
    _domain(client, "fill", [14 * GIB, 14 * GIB], hosts[2], ha=False)
    _protect(client)
    move = {"domain_id": v["id"], "destination_host_id": hosts[1]}
    body = _refused(client.post("/v1/migrations", json=move))
    assert body["failed_host_ids"] == [hosts[0]]
    assert [s["domain_name"] for s in body["stranded"]] == ["a"]
    assert client.get("/v1/migrations").json()["items"] == []  # no claim was left behind
    r = client.post("/v1/migrations?ha_overcommit=true", json=move)
    assert r.status_code == 201, r.text
    assert _events(client, "cluster.ha_overcommitted")[0]["subject_type"] == "migration"


def test_an_unpinned_create_goes_where_it_keeps_the_plan(client: ApiClient) -> None:
    hosts = _hosts(client, n=3)
    _domain(client, "a", [8 * GIB, 8 * GIB], hosts[0])
    _domain(client, "fill", [14 * GIB, 14 * GIB], hosts[2], ha=False)
    _protect(client)
    # a 12 GiB protected vnode: on h1 its host's failure strands it (h0 has 8 + 8, h2 is
    # full); on h0 it restarts on h1 along with a: the create must pick h0
    body = {**domain_body("b", [12 * GIB], dynamic_min_mib=12 * GIB), "labels": {"ha": "true"}}
    r = client.post("/v1/domains", json=body)
    if r.status_code == 201:
        assert r.json()["host_id"] != hosts[1]
    else:  # no host keeps the plan: the refusal names the plan, not memory
        _refused(r)
    assert _plan(client, label_selector="ha=true")["tolerated"] is True


def _agent_steps(client: ApiClient, host_id: str, token: str) -> list[dict[str, Any]]:
    r = client.get(f"/v1/agent/hosts/{host_id}/steps", token=token)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_fail_restarts_protected_domains_and_the_agent_starts_them(client: ApiClient) -> None:
    made = [
        client.post("/v1/hosts", json=host_body(f"h{i}", n=2, memory_mib=16 * GIB)).json()
        for i in range(3)
    ]
    hosts = [h["id"] for h in made]
    tokens = {h["id"]: h["agent_token"] for h in made}
    a = _domain(client, "a", [8 * GIB, 4 * GIB], hosts[0])
    b = _domain(client, "b", [6 * GIB], hosts[0])
    plain = _domain(client, "plain", [2 * GIB], hosts[0], ha=False)
    _domain(client, "fill", [15 * GIB, 15 * GIB], hosts[2], ha=False)  # h2 cannot take them
    _protect(client)
    r = client.post(f"/v1/hosts/{hosts[0]}/fail", json={"reason": "power supply"})
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["reason"] == "power supply" and rec["stranded"] == []
    assert {x["domain_id"]: x["host_id"] for x in rec["restarts"]} == {
        a["id"]: hosts[1],
        b["id"]: hosts[1],
    }
    assert all(x["state"] == "restarting" for x in rec["restarts"]) and rec["done"] is False
    host = client.get(f"/v1/hosts/{hosts[0]}").json()
    assert host["state"] == "offline" and host["recovery"]["restarts"] == rec["restarts"]
    got = client.get(f"/v1/domains/{a['id']}").json()
    assert got["state"] == "restarting" and got["host_id"] == hosts[1]
    assert sum(sum(v["backing_mib"]) for v in got["vnodes"]) == 12 * GIB
    assert all(max(v["backing_mib"]) == v["target_mib"] for v in got["vnodes"])  # one pnode
    assert client.get(f"/v1/domains/{plain['id']}").json()["host_id"] == hosts[0]
    # the failed host keeps only the unprotected domain's memory; h1 holds the restarts
    acc = client.get(f"/v1/hosts/{hosts[0]}/accounting").json()
    assert sum(p["allocated_mib"] for p in acc["pnodes"]) == 2 * GIB
    acc = client.get(f"/v1/hosts/{hosts[1]}/accounting").json()
    assert sum(p["allocated_mib"] for p in acc["pnodes"]) == 18 * GIB
    audit(client.app.state.sessionmaker)
    # calling again places nothing twice
    again = client.post(f"/v1/hosts/{hosts[0]}/fail", json={}).json()
    assert sorted(x["domain_id"] for x in again["restarts"]) == sorted([a["id"], b["id"]])
    # the destination's agent sees one start step per domain and acknowledges them
    steps = [s for s in _agent_steps(client, hosts[1], tokens[hosts[1]]) if s["op"] == "start"]
    assert sorted(s["domain_id"] for s in steps) == sorted([a["id"], b["id"]])
    # each names this host and where each vnode's memory is charged here (xl's vnuma pnode=)
    for s in steps:
        vnodes = client.get(f"/v1/domains/{s['domain_id']}").json()["vnodes"]
        homes = [[v["backing_mib"].index(v["target_mib"])] for v in vnodes]
        assert [[v["home_pnode"]] for v in vnodes] == homes
        assert s["destination"] == {"host_id": hosts[1], "host_name": "h1", "nodesets": homes}
    for s in steps:
        ok = s["domain_id"] == a["id"]
        r = client.post(
            f"/v1/agent/hosts/{hosts[1]}/steps/{s['id']}/ack",
            json={"ok": ok},
            token=tokens[hosts[1]],
        )
        assert r.status_code == 200, r.text
    done = client.get(f"/v1/hosts/{hosts[0]}").json()["recovery"]
    assert done["done"] is True
    assert {x["domain_id"]: x["state"] for x in done["restarts"]} == {
        a["id"]: "running",
        b["id"]: "failed",
    }
    actions = [e["action"] for e in client.get("/v1/events?limit=500").json()["items"]]
    assert "host.failed" in actions and actions.count("domain.restarting") == 2
    assert "domain.restarted" in actions and "domain.restart_failed" in actions
    audit(client.app.state.sessionmaker)


def test_fail_names_what_cannot_restart(client: ApiClient) -> None:
    hosts = _hosts(client, n=2)
    big = _domain(client, "big", [12 * GIB], hosts[0])
    _domain(client, "fill", [8 * GIB, 8 * GIB], hosts[1], ha=False)
    r = client.post(f"/v1/hosts/{hosts[0]}/fail")
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["restarts"] == []
    assert [s["domain_id"] for s in rec["stranded"]] == [big["id"]]
    assert "MiB" in rec["stranded"][0]["reason"]
    assert client.get(f"/v1/domains/{big['id']}").json()["host_id"] == hosts[0]
    assert client.post(f"/v1/hosts/{hosts[0]}/fail").status_code == 200
    assert client.post("/v1/hosts/00000000-0000-0000-0000-000000000000/fail").status_code == 404
    audit(client.app.state.sessionmaker)
