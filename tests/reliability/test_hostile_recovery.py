"""A host declared failed while everything else goes on (issue 26): recoveries raced with
creates on the destinations, target raises, a migration to and one from the failed host, and a
second recovery of the same host; 2 uvicorn workers on PostgreSQL. After every round the auditor
finds allocated = Σ charges and claimed = Σ claims everywhere, no claim left on a failed host,
and every domain's backing on its own host only (nothing placed twice)."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from service.db.models import Backing, Claim, Domain, Host
from service.db.session import make_engine, make_sessionmaker
from tests.api.factories import domain_body, host_body
from tests.reliability.hostile import at_once, audit_db, client, live_server

pytestmark = [pytest.mark.postgres, pytest.mark.reliability]

ROUNDS = int(os.environ.get("NUMA_BALLOON_HOSTILE_ROUNDS", "200")) // 20 or 1
OK = {200, 201, 204, 404, 409}


def _post(path: str, body: Any = None):  # type: ignore[no-untyped-def]
    def call(http: httpx.Client) -> httpx.Response:
        return http.post(path, json=body)

    return call


def _put(path: str, body: Any):  # type: ignore[no-untyped-def]
    def call(http: httpx.Client) -> httpx.Response:
        return http.put(path, json=body)

    return call


def _nothing_twice(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine)() as s:
            rows = s.execute(
                select(Backing.domain_id, func.count(func.distinct(Backing.host_id))).group_by(
                    Backing.domain_id
                )
            ).all()
            assert all(n == 1 for _, n in rows), rows
            stray = s.execute(
                select(Backing.domain_id)
                .join(Domain, Domain.id == Backing.domain_id)
                .where(Backing.host_id != Domain.host_id)
            ).all()
            assert not stray, stray
            failed = select(Host.id).where(Host.recovery.is_not(None))
            left = s.scalar(select(func.count()).where(Claim.host_id.in_(failed)))
            assert left == 0, f"{left} claim(s) outlive a recovery"
    finally:
        engine.dispose()


def test_recoveries_raced_with_creates_targets_and_migrations(postgres_db_url: str) -> None:
    with live_server(postgres_db_url) as server, client(server) as http:
        for r in range(ROUNDS):
            hosts = []
            for i in range(3):
                made = http.post("/v1/hosts", json=host_body(f"r{r}-h{i}", n=2, memory_mib=8192))
                assert made.status_code == 201, made.text
                hosts.append(made.json()["id"])
            doomed, spare, other = hosts
            mine = []
            for k in range(3):
                body = domain_body(f"r{r}-d{k}", [1024, 512], host_id=doomed)
                body["memory"]["dynamic_min_mib"] = 1024
                body["labels"] = {"ha": "true"}
                got = http.post("/v1/domains", json=body)
                assert got.status_code == 201, got.text
                mine.append(got.json())
            away = http.post("/v1/domains", json=domain_body(f"r{r}-away", [512], host_id=other))
            assert away.status_code == 201, away.text
            to_doomed = http.post(
                "/v1/migrations",
                json={"domain_id": away.json()["id"], "destination_host_id": doomed},
            )
            assert to_doomed.status_code == 201, to_doomed.text
            from_doomed = http.post(
                "/v1/migrations", json={"domain_id": mine[0]["id"], "destination_host_id": other}
            )
            assert from_doomed.status_code == 201, from_doomed.text
            calls = [
                _post(f"/v1/hosts/{doomed}/fail", {"reason": f"round {r}"}),
                _post(f"/v1/hosts/{doomed}/fail", {"reason": f"round {r} again"}),
                _post("/v1/domains", domain_body(f"r{r}-new", [2048, 2048], host_id=spare)),
                _put(f"/v1/domains/{mine[1]['id']}/target", {"target_mib": 1536}),
                _post(f"/v1/migrations/{from_doomed.json()['id']}/abort"),
            ]
            answers = at_once(server, calls)
            assert {a.status_code for a in answers} <= OK, [a.text for a in answers]
            audit_db(postgres_db_url)
            _nothing_twice(postgres_db_url)
            rec = http.get(f"/v1/hosts/{doomed}").json()["recovery"]
            assert rec is not None
            placed = [x["domain_id"] for x in rec["restarts"]]
            assert len(placed) == len(set(placed))
            stranded = {s["domain_id"] for s in rec["stranded"]}
            assert not stranded & set(placed)
