"""The hosts API: registration, listing, state, deletion, accounting, idempotency, events."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from service.db.models import Domain, Host, Token, Vnode
from tests.api.client import ApiClient
from tests.api.conftest import TWO_SOCKET


def create(client: ApiClient, body: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    r = client.post("/v1/hosts", json=body or TWO_SOCKET, **kw)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


def count(client: ApiClient, model: Any) -> int:
    with client.app.state.sessionmaker() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_register_two_socket_host_and_read_its_accounting(client: ApiClient) -> None:
    r = client.post("/v1/hosts", json=TWO_SOCKET)
    assert r.status_code == 201
    host = r.json()
    assert r.headers["location"] == f"/v1/hosts/{host['id']}"
    assert r.headers["etag"] == '"1"'
    assert host["state"] == "active"
    assert [p["capacity_mib"] for p in host["pnodes"]] == [63488, 64512]
    assert host["distances"] == [[10, 21], [21, 10]]
    assert host["agent_token"].startswith("nbh_") and len(host["agent_token"]) > 40

    acc = client.get(f"/v1/hosts/{host['id']}/accounting").json()
    assert acc["pnodes"] == [
        {
            "index": 0,
            "capacity_mib": 63488,
            "allocated_mib": 0,
            "claimed_mib": 0,
            "free_mib": 63488,
            "observed_free_mib": None,
        },
        {
            "index": 1,
            "capacity_mib": 64512,
            "allocated_mib": 0,
            "claimed_mib": 0,
            "free_mib": 64512,
            "observed_free_mib": None,
        },
    ]
    assert acc["domains"] == []

    got = client.get(f"/v1/hosts/{host['id']}")
    assert got.status_code == 200 and got.headers["etag"] == '"1"'
    assert "agent_token" not in got.json()


def test_agent_token_is_stored_hashed_only(client: ApiClient) -> None:
    host = create(client)
    with client.app.state.sessionmaker() as s:
        hashes = s.scalars(select(Token.token_hash)).all()
    assert len(hashes) == 1 and host["agent_token"] not in hashes[0]


def test_list_hosts_paginates_with_cursor(client: ApiClient) -> None:
    ids = []
    for i in range(5):
        body = copy.deepcopy(TWO_SOCKET)
        body["name"] = f"h{i}"
        ids.append(create(client, body)["id"])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/hosts", params=params).json()
        seen += [h["id"] for h in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == ids
    bad = client.get("/v1/hosts", params={"cursor": "garbage!!"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["query", "cursor"]


def test_patch_state_with_if_match(client: ApiClient) -> None:
    host = create(client)
    url = f"/v1/hosts/{host['id']}"
    r = client.patch(url, json={"state": "maintenance"}, headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["state"] == "maintenance"
    assert r.headers["etag"] == '"2"'
    stale = client.patch(url, json={"state": "offline"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"
    assert stale.json()["type"] == "/problems/precondition-failed"
    assert client.get(url).json()["state"] == "maintenance"
    bad = client.patch(url, json={"state": "exploded"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["body", "state"]
    events = client.get("/v1/events", params={"subject_id": host["id"]}).json()["items"]
    assert [e["action"] for e in events] == ["host.created", "host.state_changed"]
    assert events[1]["before"] == {"state": "active"}
    assert events[1]["after"] == {"state": "maintenance"}


def test_delete_host_and_refuse_while_in_use(client: ApiClient) -> None:
    free = create(client)
    assert client.delete(f"/v1/hosts/{free['id']}").status_code == 204
    assert client.get(f"/v1/hosts/{free['id']}").status_code == 404
    assert client.delete(f"/v1/hosts/{free['id']}").status_code == 404
    # The deleted host's agent token no longer authenticates.
    r = client.get("/v1/hosts", token=free["agent_token"])
    assert r.status_code == 401

    body = copy.deepcopy(TWO_SOCKET)
    body["name"] = "busy"
    busy = create(client, body)
    with client.app.state.sessionmaker() as s:
        d = Domain(
            name="vm",
            host_id=busy["id"],
            block_mib=128,
            static_max_mib=1024,
            dynamic_min_mib=512,
            dynamic_max_mib=1024,
            target_mib=1024,
            distances=[[10]],
            target_set_at=datetime.now(UTC),
            created_at=datetime.now(UTC),
            updated_at=datetime.now(UTC),
        )
        d.vnodes = [
            Vnode(index=0, size_mib=1024, vcpus=[0], vcpu_count=1, target_mib=1024, home_pnode=0)
        ]
        s.add(d)
        s.commit()
    r = client.delete(f"/v1/hosts/{busy['id']}")
    assert r.status_code == 409 and "1 domain(s)" in r.json()["detail"]
    assert client.get(f"/v1/hosts/{busy['id']}").status_code == 200


def test_idempotency_key_replays_and_never_creates_twice(client: ApiClient) -> None:
    key = {"Idempotency-Key": "create-compute-01"}
    first = client.post("/v1/hosts", json=TWO_SOCKET, headers=key)
    again = client.post("/v1/hosts", json=TWO_SOCKET, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    # The replay shows the first response's agent token again (kept sealed under the key).
    assert again.json()["agent_token"] == first.json()["agent_token"] is not None
    assert count(client, Host) == 1
    other = copy.deepcopy(TWO_SOCKET)
    other["name"] = "compute-02"
    reused = client.post("/v1/hosts", json=other, headers=key)
    assert reused.status_code == 422
    assert reused.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    assert count(client, Host) == 1


def test_duplicate_name_is_a_conflict(client: ApiClient) -> None:
    create(client)
    r = client.post("/v1/hosts", json=TWO_SOCKET)
    assert r.status_code == 409 and r.json()["type"] == "/problems/conflict"


def test_cluster_overview_sums_the_hosts(client: ApiClient) -> None:
    create(client)
    c = client.get("/v1/cluster").json()
    assert c["block_mib"] == 128 and c["hosts"] == 1 and c["domains"] == 0
    assert c["capacity_mib"] == 63488 + 64512 == c["free_mib"]
    assert c["worst_case_template"] is None
    r = client.put("/v1/cluster", json={"block_mib": 256})
    assert r.status_code == 200 and r.json()["block_mib"] == 256
    assert client.put("/v1/cluster", json={"block_mib": 100}).status_code == 422


def test_events_since_and_cursor(client: ApiClient) -> None:
    for i in range(3):
        body = copy.deepcopy(TWO_SOCKET)
        body["name"] = f"e{i}"
        create(client, body)
    page = client.get("/v1/events", params={"limit": 2}).json()
    assert [e["seq"] for e in page["items"]] == [1, 2] and page["next_cursor"] == "2"
    rest = client.get("/v1/events", params={"cursor": page["next_cursor"]}).json()
    assert [e["seq"] for e in rest["items"]] == [3] and rest["next_cursor"] is None
    assert client.get("/v1/events", params={"since": 2}).json()["items"][0]["seq"] == 3
    assert all(e["actor"] == "admin" for e in page["items"])


@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("not-a-token", 401), ("Basic abc", 401)],
)
def test_toolstack_routes_need_the_admin_token(
    client: ApiClient, token: str | None, status: int
) -> None:
    headers = {"Authorization": token} if token and " " in token else None
    r = client.get("/v1/hosts", token=None if headers else token, headers=headers)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_agent_token_cannot_use_the_toolstack_api(client: ApiClient) -> None:
    host = create(client)
    r = client.get("/v1/hosts", token=host["agent_token"])
    assert r.status_code == 403 and r.json()["type"] == "/problems/forbidden"
