"""Failover plan, protection and recovery through the API (issue 26), on both backends.

Small clusters whose answers are obvious by hand: three hosts of two 16 GiB pnodes; domains
pinned where the test wants them, protected by the label ha=true.
"""

from __future__ import annotations

from typing import Any

from tests.api.audit import audit
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
