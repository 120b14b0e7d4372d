"""Request limits: body size, JSON depth and list sizes, each a clear 413/422, nothing stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from service.db.models import Domain, Host
from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body, slit

pytestmark = pytest.mark.reliability


def _nothing_stored(client: ApiClient) -> None:
    with client.app.state.sessionmaker() as s:
        assert s.scalar(select(func.count()).select_from(Host)) == 0
        assert s.scalar(select(func.count()).select_from(Domain)) == 0


def test_a_body_over_the_cap_is_413_by_declared_length(client: ApiClient) -> None:
    body = b'{"name": "' + b"x" * (2 << 20) + b'"}'
    r = client.post("/v1/hosts", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["type"] == "/problems/payload-too-large"
    _nothing_stored(client)


def test_a_streamed_body_over_the_cap_is_413_without_content_length(client: ApiClient) -> None:
    async def chunks() -> Any:
        for _ in range(40):
            yield b" " * 65536

    r = client.post("/v1/domains", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    _nothing_stored(client)


@pytest.mark.parametrize("depth", [33, 1000, 100_000])
def test_json_nested_deeper_than_the_cap_is_422(client: ApiClient, depth: int) -> None:
    body = "[" * depth + "]" * depth
    r = client.post("/v1/hosts", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["body"]
    _nothing_stored(client)


def test_brackets_inside_strings_do_not_count_as_depth(client: ApiClient) -> None:
    body = host_body("[" * 200)
    r = client.post(
        "/v1/hosts", content=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 201, r.text


def test_undecodable_body_is_422_not_400(client: ApiClient) -> None:
    r = client.post("/v1/hosts", content=b"\xff\xfe{", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"][0] == "body"


def _loc_starts(r: Any, *prefix: Any) -> bool:
    return any(e["loc"][: len(prefix)] == list(prefix) for e in r.json()["errors"])


def test_65_pnodes_are_refused(client: ApiClient) -> None:
    body = host_body("big", n=65)
    r = client.post("/v1/hosts", json=body)
    assert r.status_code == 422 and _loc_starts(r, "body", "pnodes")
    _nothing_stored(client)


def test_64_pnodes_are_accepted(client: ApiClient) -> None:
    r = client.post("/v1/hosts", json=host_body("big", n=64, memory_mib=1024))
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    "distances",
    [
        slit(3),  # 3x3 for 2 pnodes
        [[10, 21], [21, 10], [21, 21]],  # a row too many
        [[10, 21, 21], [21, 10, 21]],  # rows too long
        [[10, 21] + [21] * 70, [21, 10]],  # a row over the cap
    ],
)
def test_distances_must_be_n_by_n(client: ApiClient, distances: list[list[int]]) -> None:
    body = host_body("h", n=2)
    body["distances"] = distances
    r = client.post("/v1/hosts", json=body)
    assert r.status_code == 422 and _loc_starts(r, "body", "distances"), r.text
    _nothing_stored(client)


def test_33_vnodes_are_refused(client: ApiClient) -> None:
    host = client.post("/v1/hosts", json=host_body("h", n=2)).json()
    r = client.post("/v1/domains", json=domain_body("vm", [128] * 33, host_id=host["id"]))
    assert r.status_code == 422 and _loc_starts(r, "body", "vnodes"), r.text


def test_32_vnodes_are_accepted(client: ApiClient) -> None:
    host = client.post("/v1/hosts", json=host_body("h", n=2)).json()
    r = client.post(
        "/v1/domains", json=domain_body("vm", [128] * 32, vcpus_per_vnode=1, host_id=host["id"])
    )
    assert r.status_code == 201, r.text


def test_vnode_distance_rows_must_match_the_vnode_count(client: ApiClient) -> None:
    host = client.post("/v1/hosts", json=host_body("h", n=2)).json()
    body = domain_body("vm", [1024, 1024], host_id=host["id"])
    body["vnodes"][0]["distances"] = [10, 21, 21]
    r = client.post("/v1/domains", json=body)
    assert r.status_code == 422 and _loc_starts(r, "body", "vnodes"), r.text


def test_other_lists_are_capped(client: ApiClient) -> None:
    host = client.post("/v1/hosts", json=host_body("h", n=2)).json()
    squeeze = {"free_mib": {str(i): 1 for i in range(65)}}
    r = client.post(f"/v1/hosts/{host['id']}/squeeze", json=squeeze)
    assert r.status_code == 422, r.text
    observed = {"pnodes": [{"index": 0, "free_mib": 1}] * 65}
    r = client.put(
        f"/v1/agent/hosts/{host['id']}/observed", json=observed, token=host["agent_token"]
    )
    assert r.status_code == 422, r.text
