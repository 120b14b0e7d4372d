"""Evacuating a host: maintenance, one migration per domain, the misfits listed with reasons."""

from __future__ import annotations

from typing import Any

from service.db.invariants import audit
from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body
from tests.api.test_auto_advance import _do_pending


def test_evacuate_moves_every_domain_that_fits_and_names_the_rest(client: ApiClient) -> None:
    src = client.post("/v1/hosts", json=host_body("src", n=2, memory_mib=32768)).json()
    dst = client.post("/v1/hosts", json=host_body("dst", n=2, memory_mib=8192)).json()
    hosts = {src["id"]: src, dst["id"]: dst}
    guests: dict[str, dict[str, Any]] = {}
    for name, sizes in (
        ("small-1", [2048, 2048]),
        ("small-2", [1024, 1024]),
        ("huge", [12288, 12288]),
    ):
        body = domain_body(name, sizes, host_id=src["id"], dynamic_min_mib=sum(sizes))
        r = client.post("/v1/domains", json=body)
        assert r.status_code == 201, r.text
        guests[r.json()["id"]] = r.json()
    huge = next(d for d in guests.values() if d["name"] == "huge")  # more than dst has at all

    r = client.post(f"/v1/hosts/{src['id']}/evacuate", json={"auto_advance": True})
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["host_id"] == src["id"]
    assert sorted(m["domain_id"] for m in out["migrations"]) == sorted(
        d for d in guests if d != huge["id"]
    )
    assert all(m["destination_host_id"] == dst["id"] for m in out["migrations"])
    assert all(m["auto_advance"] and m["state"] != "planned" for m in out["migrations"])
    assert [u["domain_id"] for u in out["unplaced"]] == [huge["id"]]
    assert "MiB" in out["unplaced"][0]["reason"] or "room" in out["unplaced"][0]["reason"]

    host = client.get(f"/v1/hosts/{src['id']}").json()
    assert host["state"] == "maintenance"
    assert host["evacuation"]["domains_remaining"] == 3
    assert host["evacuation"]["migrations_in_flight"] == 2
    # Again: nothing new is started for the domains already leaving.
    again = client.post(f"/v1/hosts/{src['id']}/evacuate", json={"auto_advance": True}).json()
    assert sorted(m["id"] for m in again["migrations"]) == sorted(
        m["id"] for m in out["migrations"]
    )

    for m in out["migrations"]:
        guest = guests[m["domain_id"]]["guest_token"]
        for _ in range(10):
            cur = client.get(f"/v1/migrations/{m['id']}").json()
            if cur["state"] == "completed":
                break
            _do_pending(client, cur, hosts, guest)
        assert cur["state"] == "completed", cur
    host = client.get(f"/v1/hosts/{src['id']}").json()
    assert host["evacuation"]["domains_remaining"] == 1  # the huge one stays
    assert host["evacuation"]["migrations_in_flight"] == 0
    listed = client.get("/v1/hosts", params={"name": "src"}).json()["items"][0]
    assert listed["evacuation"] == host["evacuation"]
    back = client.patch(f"/v1/hosts/{src['id']}", json={"state": "active"}).json()
    assert back["evacuation"] is None
    audit(client.app.state.sessionmaker)


def test_evacuate_an_unknown_host_is_404(client: ApiClient) -> None:
    r = client.post("/v1/hosts/6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70/evacuate", json={})
    assert r.status_code == 404
