"""Placement preview (nothing created), ?limit=, and 409s that say what to do."""

from __future__ import annotations

from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body

MEMORY = {"dynamic_min_mib": 2048, "dynamic_max_mib": 8192, "target_mib": 4096}


def test_preview_ranks_hosts_and_creates_nothing(client: ApiClient) -> None:
    small = client.post("/v1/hosts", json=host_body("small", n=2, memory_mib=1536)).json()
    for i in range(3):
        client.post("/v1/hosts", json=host_body(f"big-{i}", n=2, memory_mib=65536))
    events_before = client.get("/v1/events").json()["items"]
    r = client.post("/v1/placements", json={"memory": MEMORY, "vnode_count": 2, "vcpus": 4})
    assert r.status_code == 200, r.text
    hosts = r.json()["hosts"]
    assert len(hosts) == 4
    assert [h["feasible"] for h in hosts] == [True, True, True, False]
    assert hosts[-1]["host_id"] == small["id"]
    assert "MiB" in hosts[-1]["reason"] and "GiB" not in hosts[-1]["reason"]
    assert hosts[-1]["max_feasible_mib"] == 3072  # its whole free memory
    assert all(h["max_feasible_mib"] == 8192 for h in hosts[:3])
    assert all(len(h["mapping"]) == 2 for h in hosts)
    # Nothing was written: no domain, no claim, no event.
    assert client.get("/v1/domains").json()["items"] == []
    assert client.get("/v1/events").json()["items"] == events_before
    top = client.post("/v1/placements?limit=2", json={"memory": MEMORY, "vnode_count": 2,
                                                      "vcpus": 4})  # fmt: skip
    assert [h["host_id"] for h in top.json()["hosts"]] == [h["host_id"] for h in hosts[:2]]
    pinned = client.post(
        "/v1/placements",
        json={"memory": MEMORY, "vnode_count": 2, "vcpus": 4, "host_id": small["id"]},
    )
    assert [h["host_id"] for h in pinned.json()["hosts"]] == [small["id"]]
    bad = client.post("/v1/placements", json={"memory": MEMORY, "vcpus": 4})
    assert bad.status_code == 422


def test_domain_placements_take_a_limit(client: ApiClient) -> None:
    a = client.post("/v1/hosts", json=host_body("a")).json()
    for name in ("b", "c"):
        client.post("/v1/hosts", json=host_body(name))
    d = client.post("/v1/domains", json=domain_body("vm", [1024, 1024], host_id=a["id"])).json()
    every = client.get(f"/v1/domains/{d['id']}/placements").json()["hosts"]
    assert len(every) == 3
    one = client.get(f"/v1/domains/{d['id']}/placements", params={"limit": 1}).json()["hosts"]
    assert one == every[:1]
    assert client.get(f"/v1/domains/{d['id']}/placements?limit=0").status_code == 422


def test_an_unpinned_create_that_fits_nowhere_says_what_would_help(client: ApiClient) -> None:
    host = client.post("/v1/hosts", json=host_body("full", n=1, memory_mib=8192)).json()
    hog = domain_body("hog", [6144], host_id=host["id"], dynamic_min_mib=1024)
    assert client.post("/v1/domains", json=hog).status_code == 201
    newcomer = domain_body("newcomer", [4096], dynamic_min_mib=4096)
    r = client.post("/v1/domains", json=newcomer)
    assert r.status_code == 409, r.text
    p = r.json()
    assert "GiB" not in p["detail"]
    assert p["max_feasible_mib"] == 2048
    assert p["hosts"][0]["host_id"] == host["id"]
    assert p["hosts"][0]["free_mib"] == 2048 and p["hosts"][0]["squeezable_mib"] == 5120
    squeeze = p["squeeze"]
    assert squeeze["host_id"] == host["id"] and squeeze["would_free_mib"] == 2048
    # Doing what it says admits the domain.
    done = client.post(f"/v1/hosts/{host['id']}/squeeze", json={"total_free_mib": 4096})
    assert done.status_code == 200, done.text
    assert client.post("/v1/domains", json=newcomer).status_code == 201
