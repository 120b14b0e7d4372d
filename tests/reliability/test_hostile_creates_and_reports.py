"""Issue #22, items 6 and 7, as a hostile client meets them: 2 uvicorn workers on PostgreSQL.

Retries of one create fired at the same instant with one Idempotency-Key (a client whose first
attempt timed out, retrying from several threads) all get the first 201, secret included, and
one row exists; an agent report that makes no sense is refused and changes nothing.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import httpx
import pytest

from tests.api.factories import domain_body, host_body
from tests.reliability.hostile import at_once, audit_db, client, live_server

pytestmark = [pytest.mark.postgres, pytest.mark.reliability]

ROUNDS = int(os.environ.get("NUMA_BALLOON_HOSTILE_ROUNDS", "200")) // 20 or 1


def _post(path: str, body: dict[str, Any], key: str):  # type: ignore[no-untyped-def]
    def call(http: httpx.Client) -> httpx.Response:
        return http.post(path, json=body, headers={"Idempotency-Key": key})

    return call


def _one_201(answers: list[httpx.Response]) -> dict[str, Any]:
    assert [a.status_code for a in answers] == [201] * len(answers), [a.text for a in answers]
    first: dict[str, Any] = answers[0].json()
    assert all(a.json() == first for a in answers)
    return first


def test_retries_fired_at_once_with_one_key_create_once(postgres_db_url: str) -> None:
    with live_server(postgres_db_url) as server, client(server) as http:
        host = http.post("/v1/hosts", json=host_body("h", n=2)).json()
        for rnd in range(ROUNDS):
            body = domain_body(f"vm{rnd}", [1024, 1024], host_id=host["id"])
            made = _one_201(at_once(server, [_post("/v1/domains", body, str(uuid.uuid4()))] * 4))
            assert made["guest_token"] is not None
            key = {"name": f"k{rnd}", "role": "viewer"}
            secret = _one_201(at_once(server, [_post("/v1/api-keys", key, str(uuid.uuid4()))] * 4))
            viewer = {"Authorization": f"Bearer {secret['secret']}"}
            assert http.get("/v1/hosts", headers=viewer).status_code == 200
        assert len(http.get("/v1/domains", params={"limit": 500}).json()["items"]) == ROUNDS
        assert len(http.get("/v1/api-keys", params={"limit": 500}).json()["items"]) == ROUNDS
        audit_db(postgres_db_url)  # asserts the accounting: charges, claims, capacity


def test_nonsense_reports_are_refused_and_change_nothing(postgres_db_url: str) -> None:
    with live_server(postgres_db_url) as server, client(server) as http:
        host = http.post("/v1/hosts", json=host_body("here", n=2)).json()
        other = http.post("/v1/hosts", json=host_body("there", n=2)).json()
        mine = http.post("/v1/domains", json=domain_body("a", [2048], host_id=host["id"])).json()
        away = http.post("/v1/domains", json=domain_body("b", [2048], host_id=other["id"])).json()
        agent = {"Authorization": f"Bearer {host['agent_token']}"}
        path = f"/v1/agent/hosts/{host['id']}/report"
        sizes = [{"index": 0, "actual_mib": 2048}]
        for body, status, loc in (
            (
                {"pnodes": [{"index": 1, "free_mib": 5}, {"index": 1, "free_mib": 99999}]},
                422,
                ["body", "pnodes", 1, "index"],
            ),
            (
                {
                    "domains": [
                        {"domain_id": mine["id"], "vnodes": [{"index": 0, "actual_mib": 4096}]}
                    ]
                },
                422,
                ["body", "domains", 0, "vnodes", 0, "actual_mib"],
            ),
            (
                {"domains": [{"domain_id": away["id"], "vnodes": sizes}]},
                409,
                ["body", "domains", 0, "domain_id"],
            ),
        ):
            r = http.post(path, headers=agent, json=body)
            assert r.status_code == status and r.json()["errors"][0]["loc"] == loc, r.text
        acc = http.get(f"/v1/hosts/{host['id']}/accounting").json()
        assert [p["observed_free_mib"] for p in acc["pnodes"]] == [None, None]
        for dom in (mine, away):
            assert http.get(f"/v1/domains/{dom['id']}").json()["vnodes"][0]["actual_mib"] is None
