"""Names, external ids and labels; unknown query parameters; host list capacity; shorthand."""

from __future__ import annotations

from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body


def _host(client: ApiClient, name: str, **extra: object) -> dict[str, object]:
    r = client.post("/v1/hosts", json={**host_body(name), **extra})
    assert r.status_code == 201, r.text
    out: dict[str, object] = r.json()
    return out


def test_hosts_filter_by_name_external_id_and_labels(client: ApiClient) -> None:
    a = _host(client, "a", external_id="node-a", labels={"rack": "r1", "pool": "gold"})
    b = _host(client, "b", labels={"rack": "r1", "pool": "silver"})
    _host(client, "c", labels={"rack": "r2"})

    def names(**params: object) -> list[str]:
        r = client.get("/v1/hosts", params=params)
        assert r.status_code == 200, r.text
        return [h["name"] for h in r.json()["items"]]

    assert names(name="a") == ["a"]
    assert names(external_id="node-a") == ["a"]
    assert names(label="rack=r1") == ["a", "b"]
    assert names(label=["rack=r1", "pool=silver"]) == ["b"]
    assert names(label="rack=r9") == []
    assert client.get("/v1/hosts", params={"label": "no-equals"}).status_code == 422
    assert client.get(f"/v1/hosts/by-name/{a['name']}").json()["id"] == a["id"]
    assert client.get("/v1/hosts/by-name/zzz").status_code == 404
    dup = client.post("/v1/hosts", json={**host_body("d"), "external_id": "node-a"})
    assert dup.status_code == 409
    # Patch labels and external id with If-Match; the ETag moves (they are spec).
    etag = client.get(f"/v1/hosts/{b['id']}").headers["ETag"]
    r = client.patch(
        f"/v1/hosts/{b['id']}",
        json={"labels": {"rack": "r2"}, "external_id": "node-b"},
        headers={"If-Match": etag},
    )
    assert r.status_code == 200, r.text
    assert r.json()["labels"] == {"rack": "r2"} and r.json()["external_id"] == "node-b"
    assert r.json()["state"] == "active" and r.headers["ETag"] != etag
    assert names(label="rack=r2") == ["b", "c"]
    taken = client.patch(f"/v1/hosts/{b['id']}", json={"external_id": "node-a"})
    assert taken.status_code == 409
    assert client.patch(f"/v1/hosts/{b['id']}", json={}).status_code == 422
    too_many = {f"k{i}": "v" for i in range(65)}
    assert client.patch(f"/v1/hosts/{b['id']}", json={"labels": too_many}).status_code == 422


def test_domains_filter_patch_and_lookup_by_name(client: ApiClient) -> None:
    host = _host(client, "h")
    body = domain_body("vm-a", [1024], host_id=str(host["id"]))
    a = client.post("/v1/domains", json={**body, "labels": {"tenant": "acme"}}).json()
    client.post("/v1/domains", json=domain_body("vm-b", [1024], host_id=str(host["id"])))
    listed = client.get("/v1/domains", params={"name": "vm-a"}).json()["items"]
    assert [d["id"] for d in listed] == [a["id"]]
    by_label = client.get("/v1/domains", params={"label": "tenant=acme"}).json()["items"]
    assert [d["name"] for d in by_label] == ["vm-a"]
    got = client.get("/v1/domains/by-name/vm-a")
    assert got.status_code == 200 and got.json()["id"] == a["id"]
    r = client.patch(
        f"/v1/domains/{a['id']}",
        json={"external_id": "nova-1"},
        headers={"If-Match": got.headers["ETag"]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["external_id"] == "nova-1" and r.json()["labels"] == {"tenant": "acme"}
    stale = client.patch(
        f"/v1/domains/{a['id']}", json={"labels": {}}, headers={"If-Match": got.headers["ETag"]}
    )
    assert stale.status_code == 412
    found = client.get("/v1/domains", params={"external_id": "nova-1"}).json()["items"]
    assert [d["name"] for d in found] == ["vm-a"]


def test_unknown_query_parameters_are_refused(client: ApiClient) -> None:
    r = client.get("/v1/domains", params={"nam": "vm-a"})
    assert r.status_code == 422
    assert r.json()["errors"] == [{"loc": ["query", "nam"], "msg": "unknown parameter"}]
    assert client.get("/v1/hosts", params={"limit": 5, "colour": "red"}).status_code == 422
    assert client.get("/v1/events", params={"wait_s": 1}).status_code == 422
    assert client.get("/v1/hosts", params={"limit": 5}).status_code == 200


def test_host_list_items_carry_capacity_and_free_memory(client: ApiClient) -> None:
    host = _host(client, "cap")
    client.post("/v1/domains", json=domain_body("vm", [2048, 2048], host_id=str(host["id"])))
    item = client.get("/v1/hosts").json()["items"][0]
    acct = client.get(f"/v1/hosts/{host['id']}/accounting").json()["pnodes"]
    for p, a in zip(item["pnodes"], acct, strict=True):
        for key in ("capacity_mib", "allocated_mib", "claimed_mib", "free_mib"):
            assert p[key] == a[key]
    mem = item["memory"]
    assert mem["allocated_mib"] == 4096
    assert mem["free_mib"] == mem["capacity_mib"] - 4096 == 2 * 65536 - 4096


def test_vnode_count_shorthand_takes_the_hosts_distances(client: ApiClient) -> None:
    host = _host(client, "four", pnodes=[{"memory_mib": 8192, "cpus": 4}] * 4, distances=[
        [10, 12, 21, 21], [12, 10, 21, 21], [21, 21, 10, 12], [21, 21, 12, 10]
    ])  # fmt: skip
    memory = {"dynamic_min_mib": 2048, "dynamic_max_mib": 8192, "target_mib": 4096}
    r = client.post(
        "/v1/domains",
        json={"name": "short", "vnode_count": 2, "vcpus": 6, "memory": memory,
              "host_id": host["id"]},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    d = r.json()
    assert [v["distances"] for v in d["vnodes"]] == [[10, 21], [21, 10]]
    assert [v["vcpus"] for v in d["vnodes"]] == [[0, 1, 2], [3, 4, 5]]
    assert [v["size_mib"] for v in d["vnodes"]] == [4096, 4096]
    unpinned = client.post(
        "/v1/domains",
        json={"name": "short-2", "vnode_count": 3, "vcpus": 3, "memory": memory},
    )
    assert unpinned.status_code == 201, unpinned.text
    assert unpinned.json()["vnodes"][0]["distances"] == [10, 20, 20]
    both = client.post(
        "/v1/domains",
        json={"name": "x", "vnode_count": 2, "template": "worst-case", "vcpus": 2,
              "memory": memory},
    )  # fmt: skip
    assert both.status_code == 422
