"""Races a hostile client can start: concurrent squeezes, mixed with target changes and creates,
on 2 uvicorn workers and PostgreSQL. Every round is audited from the rows: allocated equals the
charges of the backing, claimed equals the claims, no pnode is overcommitted."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.api.factories import domain_body
from tests.reliability.hostile import (
    at_once,
    audit_db,
    client,
    live_server,
    squeeze_host_with_domains,
)

pytestmark = [pytest.mark.postgres, pytest.mark.reliability]

ROUNDS = int(os.environ.get("NUMA_BALLOON_HOSTILE_ROUNDS", "200"))
OK = {200, 201, 409, 412}


def _squeeze(host_id: str, total_free_mib: int):  # type: ignore[no-untyped-def]
    def call(http: httpx.Client) -> httpx.Response:
        return http.post(f"/v1/hosts/{host_id}/squeeze", json={"total_free_mib": total_free_mib})

    return call


def _target(domain_id: str, target_mib: int):  # type: ignore[no-untyped-def]
    def call(http: httpx.Client) -> httpx.Response:
        return http.put(f"/v1/domains/{domain_id}/target", json={"target_mib": target_mib})

    return call


def _create(host_id: str, name: str):  # type: ignore[no-untyped-def]
    def call(http: httpx.Client) -> httpx.Response:
        return http.post("/v1/domains", json=domain_body(name, [256, 256], host_id=host_id))

    return call


def test_concurrent_squeeze_pairs_keep_counters_equal_to_charges(postgres_db_url: str) -> None:
    with live_server(postgres_db_url) as server, client(server) as http:
        host_id, _ = squeeze_host_with_domains(http, "sq")
        for _ in range(ROUNDS):
            answers = at_once(server, [_squeeze(host_id, 1024), _squeeze(host_id, 2048)])
            assert {a.status_code for a in answers} <= OK, [a.text for a in answers]
            audit_db(postgres_db_url)  # raises on the first difference, naming the pnode
            # Every domain back toward its dynamic_max, for the next round's pair.
            r = http.post(f"/v1/hosts/{host_id}/squeeze", json={"balance": True})
            assert r.status_code == 200, r.text


def test_squeezes_mixed_with_targets_and_creates_keep_counters_exact(
    postgres_db_url: str,
) -> None:
    with live_server(postgres_db_url) as server, client(server) as http:
        host_id, ids = squeeze_host_with_domains(http, "mix")
        for r in range(ROUNDS):
            calls = [
                _squeeze(host_id, 1024 + 128 * (r % 8)),
                _target(ids[r % len(ids)], 640 + 128 * (r % 5)),
                _create(host_id, f"mix-{r}"),
            ]
            answers = at_once(server, calls)
            assert {a.status_code for a in answers} <= OK, [a.text for a in answers]
            audit_db(postgres_db_url)
            if answers[2].status_code == 201:
                gone = http.delete(f"/v1/domains/{answers[2].json()['id']}")
                assert gone.status_code == 204, gone.text
            r_ = http.post(f"/v1/hosts/{host_id}/squeeze", json={"balance": True})
            assert r_.status_code == 200, r_.text
