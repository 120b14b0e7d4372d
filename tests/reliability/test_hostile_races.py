"""Races a hostile client can start: concurrent squeezes, mixed with target changes and creates,
on 2 uvicorn workers and PostgreSQL. Every round is audited from the rows: allocated equals the
charges of the backing, claimed equals the claims, no pnode is overcommitted."""

from __future__ import annotations

import os
import time

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
#: `make test` runs a tenth of the rounds; the full soak runs in `make test-all` (marker `soak`).
SHORT_OR_SOAK = pytest.mark.parametrize(
    "rounds",
    [
        pytest.param(max(ROUNDS // 10, 1), id="short"),
        pytest.param(ROUNDS, id="soak", marks=pytest.mark.soak),
    ],
)
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


@SHORT_OR_SOAK
def test_concurrent_squeeze_pairs_keep_counters_equal_to_charges(
    postgres_db_url: str, rounds: int
) -> None:
    with live_server(postgres_db_url) as server, client(server) as http:
        host_id, _ = squeeze_host_with_domains(http, "sq")
        for _ in range(rounds):
            answers = at_once(server, [_squeeze(host_id, 1024), _squeeze(host_id, 2048)])
            assert {a.status_code for a in answers} <= OK, [a.text for a in answers]
            audit_db(postgres_db_url)  # raises on the first difference, naming the pnode
            # Every domain back toward its dynamic_max, for the next round's pair.
            r = http.post(f"/v1/hosts/{host_id}/squeeze", json={"balance": True})
            assert r.status_code == 200, r.text


@SHORT_OR_SOAK
def test_squeezes_mixed_with_targets_and_creates_keep_counters_exact(
    postgres_db_url: str, rounds: int
) -> None:
    with live_server(postgres_db_url) as server, client(server) as http:
        host_id, ids = squeeze_host_with_domains(http, "mix")
        for r in range(rounds):
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


@pytest.mark.parametrize(
    "rounds",
    [
        pytest.param(2, id="short"),  # one each way round
        pytest.param(max(ROUNDS // 20, 4), id="soak", marks=pytest.mark.soak),
    ],
)
def test_sweeps_and_starts_in_opposite_directions_never_deadlock_into_a_5xx(
    postgres_db_url: str, rounds: int
) -> None:
    """Lapsed migrations around a ring of hosts, swept by many concurrent starts that go the
    other way round: each sweep locks one pair per transaction, so no 503, no leaked claim."""
    hosts = 6
    with (
        live_server(postgres_db_url, NUMA_BALLOON_CLAIM_TTL_S="1") as server,
        client(server) as http,
    ):
        ring = []
        for i in range(hosts):
            r = http.post("/v1/hosts", json=host_body_one(f"ring-{i}"))
            assert r.status_code == 201, r.text
            ring.append(r.json()["id"])
        doms = []
        for i in range(hosts):
            body = domain_body(f"ring-vm-{i}", [1024], host_id=ring[i], dynamic_min_mib=1024)
            r = http.post("/v1/domains", json=body)
            assert r.status_code == 201, r.text
            doms.append(r.json()["id"])
        for rnd in range(rounds):
            step = 1 if rnd % 2 == 0 else -1
            for i in range(hosts):  # planned migrations whose lease will lapse
                http.post(
                    "/v1/migrations",
                    json={"domain_id": doms[i], "destination_host_id": ring[(i + step) % hosts]},
                )
            time.sleep(1.1)
            calls = [_start(doms[i], ring[(i - step) % hosts]) for i in range(hosts)] * 2
            answers = at_once(server, calls)
            assert {a.status_code for a in answers} <= OK, [a.text for a in answers]
            for a in answers:  # leave every domain running for the next round
                if a.status_code == 201:
                    gone = http.post(f"/v1/migrations/{a.json()['id']}/abort")
                    # 409 when its 1 s lease already lapsed and a sweep failed it
                    assert gone.status_code in (200, 409), gone.text
            audit_db(postgres_db_url)


def host_body_one(name: str) -> dict[str, object]:
    return {"name": name, "pnodes": [{"memory_mib": 8192, "cpus": 8}], "distances": [[10]]}


def _start(domain_id: str, destination: str):  # type: ignore[no-untyped-def]
    def call(http: httpx.Client) -> httpx.Response:
        return http.post(
            "/v1/migrations", json={"domain_id": domain_id, "destination_host_id": destination}
        )

    return call
