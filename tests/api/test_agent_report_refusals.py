"""Agent reports that make no sense are refused, located, and change nothing (issue #22, item 7).

Sizes above a vnode's span and a pnode named twice got 200 (the last pnode won:
`observed_free_mib` became 99999); a domain of another host was silently ignored. Both the batch
report and the single observation.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body


def _world(client: ApiClient) -> dict[str, Any]:
    host = client.post("/v1/hosts", json=host_body("kvm-1", n=2)).json()
    other = client.post("/v1/hosts", json=host_body("kvm-2", n=2)).json()
    dom = client.post(
        "/v1/domains", json=domain_body("vm-1", [4096, 4096], target_mib=8192, host_id=host["id"])
    ).json()
    away = client.post("/v1/domains", json=domain_body("vm-2", [2048], host_id=other["id"])).json()
    return {"host": host, "other": other, "dom": dom, "away": away}


def _report(client: ApiClient, host: dict[str, Any], body: dict[str, Any]) -> Any:
    return client.post(f"/v1/agent/hosts/{host['id']}/report", token=host["agent_token"], json=body)


def _sizes(dom: dict[str, Any], *mib: int) -> dict[str, Any]:
    return {
        "domain_id": dom["id"],
        "vnodes": [{"index": i, "actual_mib": m} for i, m in enumerate(mib)],
    }


def _unchanged(
    client: ApiClient, w: dict[str, Any], observed: list[Any], actual: list[Any]
) -> None:
    acc = client.get(f"/v1/hosts/{w['host']['id']}/accounting").json()
    assert [p["observed_free_mib"] for p in acc["pnodes"]] == observed
    vnodes = client.get(f"/v1/domains/{w['dom']['id']}").json()["vnodes"]
    assert [v["actual_mib"] for v in vnodes] == actual


def test_a_pnode_named_twice_is_a_located_422(client: ApiClient) -> None:
    w = _world(client)
    twice = {"pnodes": [{"index": 0, "free_mib": 100}, {"index": 0, "free_mib": 99999}]}
    for r in (
        _report(client, w["host"], twice),
        client.put(
            f"/v1/agent/hosts/{w['host']['id']}/observed",
            token=w["host"]["agent_token"],
            json=twice,
        ),
    ):
        assert r.status_code == 422, r.text
        assert r.json()["errors"] == [
            {"loc": ["body", "pnodes", 1, "index"], "msg": "pnode 0 reported twice"}
        ]
    _unchanged(client, w, [None, None], [None, None])


def test_a_size_above_the_vnodes_span_is_a_located_422(client: ApiClient) -> None:
    w = _world(client)
    r = _report(client, w["host"], {"domains": [_sizes(w["dom"], 4096, 4097)]})
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [
        {
            "loc": ["body", "domains", 0, "vnodes", 1, "actual_mib"],
            "msg": "above vnode 1's size (4096 MiB)",
        }
    ]
    _unchanged(client, w, [None, None], [None, None])
    # Also once the domain is settled at its sizes: the report that only repeats them is
    # answered from plain rows, and a size above the span must not slip through there.
    free = [{"index": 0, "free_mib": 1000}]
    assert (
        _report(
            client, w["host"], {"pnodes": free, "domains": [_sizes(w["dom"], 4096, 4096)]}
        ).status_code
        == 200
    )
    r = _report(client, w["host"], {"pnodes": free, "domains": [_sizes(w["dom"], 4096, 8192)]})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"][-1] == "actual_mib"
    r = _report(
        client,
        w["host"],
        {"pnodes": [*free, {"index": 0, "free_mib": 5}], "domains": [_sizes(w["dom"], 4096, 4096)]},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "pnodes", 1, "index"]
    _unchanged(client, w, [1000, None], [4096, 4096])


def test_a_domain_of_another_host_is_refused_and_names_it(client: ApiClient) -> None:
    w = _world(client)
    stranger = str(uuid.uuid4())
    body = {
        "pnodes": [{"index": 0, "free_mib": 1234}],
        "domains": [
            _sizes(w["dom"], 4096, 4096),
            {"domain_id": stranger, "vnodes": []},
            _sizes(w["away"], 1024),
        ],
    }
    r = _report(client, w["host"], body)
    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["foreign_domain_ids"] == [w["away"]["id"]]
    assert problem["errors"] == [
        {
            "loc": ["body", "domains", 2, "domain_id"],
            "msg": f"domain {w['away']['id']} is on another host, "
            "not migrating to or from this one",
        }
    ]
    _unchanged(client, w, [None, None], [None, None])
    away = client.get(f"/v1/domains/{w['away']['id']}").json()
    assert away["vnodes"][0]["actual_mib"] is None
    # Without it the report goes through; the id numa-balloon does not know stays listed.
    body["domains"] = body["domains"][:2]
    ok = _report(client, w["host"], body)
    assert ok.status_code == 200 and ok.json()["unknown_domains"] == [stranger]


def test_a_domain_migrating_to_this_host_is_listed_not_refused(client: ApiClient) -> None:
    w = _world(client)
    m = client.post(
        "/v1/migrations",
        json={"domain_id": w["away"]["id"], "destination_host_id": w["host"]["id"]},
    )
    assert m.status_code == 201, m.text
    r = _report(client, w["host"], {"domains": [_sizes(w["away"], 1024)]})
    assert r.status_code == 200, r.text
    assert r.json()["unknown_domains"] == [w["away"]["id"]]
    # Its source host's agent reports it as its own, as before.
    src = _report(client, w["other"], {"domains": [_sizes(w["away"], 2048)]})
    assert src.status_code == 200 and src.json()["domains_accepted"] == 1
