"""Spec/status split: reports from guests and agents never move the ETag an orchestrator holds."""

from __future__ import annotations

from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body


def _world(client: ApiClient) -> tuple[dict[str, str], dict[str, str]]:
    host = client.post("/v1/hosts", json=host_body("h1")).json()
    dom = client.post(
        "/v1/domains", json=domain_body("vm-a", [2048, 2048], host_id=host["id"], target_mib=3072)
    ).json()
    return host, dom


def test_guest_reports_keep_the_domain_etag(client: ApiClient) -> None:
    _, dom = _world(client)
    etag = client.get(f"/v1/domains/{dom['id']}").headers["ETag"]
    for actual in (2048, 1536, 1536):  # progress, then a repeat; the stuck flag may flip too
        r = client.put(
            "/v1/guest/balloon",
            token=dom["guest_token"],
            json={"vnodes": [{"index": 0, "actual_mib": actual}, {"index": 1, "actual_mib": 1536}]},
        )
        assert r.status_code == 200, r.text
    got = client.get(f"/v1/domains/{dom['id']}")
    assert got.headers["ETag"] == etag
    assert got.json()["vnodes"][0]["actual_mib"] == 1536  # the status did change
    # So the orchestrator's conditional write still goes through.
    r = client.put(
        f"/v1/domains/{dom['id']}/target", json={"target_mib": 2048}, headers={"If-Match": etag}
    )
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] != etag  # a spec change moves it


def test_agent_reports_keep_the_host_etag(client: ApiClient) -> None:
    host, _ = _world(client)
    etag = client.get(f"/v1/hosts/{host['id']}").headers["ETag"]
    for free in (1024, 99999, 99999):  # drift flagged, then kept
        r = client.put(
            f"/v1/agent/hosts/{host['id']}/observed",
            token=host["agent_token"],
            json={"pnodes": [{"index": 0, "free_mib": free}]},
        )
        assert r.status_code == 200, r.text
    got = client.get(f"/v1/hosts/{host['id']}")
    assert got.json()["drift_flagged"] is True
    assert got.headers["ETag"] == etag
    r = client.patch(
        f"/v1/hosts/{host['id']}", json={"state": "maintenance"}, headers={"If-Match": etag}
    )
    assert r.status_code == 200, r.text
