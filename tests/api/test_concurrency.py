"""Concurrent clients against PostgreSQL: writers serialize per host, nothing is overcommitted.

These run only on PostgreSQL (row locks are the point); SQLite serializes every writer anyway.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update

from service.core import domains as core
from service.db.invariants import audit
from service.db.models import Backing, Domain, Pnode
from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body

pytestmark = pytest.mark.postgres


def run_parallel(n: int, fn: Any) -> list[Any]:
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(fn, range(n)))


def test_40_parallel_creates_fill_a_host_exactly_and_never_overcommit(pg_client: ApiClient) -> None:
    host = pg_client.post("/v1/hosts", json=host_body("h", n=2, memory_mib=10240)).json()

    def create(i: int) -> int:
        body = domain_body(f"vm{i}", [1024], host_id=host["id"])
        return pg_client.post("/v1/domains", json=body).status_code

    statuses = Counter(run_parallel(40, create))
    assert statuses == {201: 20, 409: 20}, statuses
    audit(pg_client.app.state.sessionmaker)
    acc = pg_client.get(f"/v1/hosts/{host['id']}/accounting").json()
    assert [p["free_mib"] for p in acc["pnodes"]] == [0, 0]


def test_parallel_target_increases_race_for_the_same_free_memory(pg_client: ApiClient) -> None:
    host = pg_client.post("/v1/hosts", json=host_body("h", n=1, memory_mib=16384)).json()
    ids = [
        pg_client.post(
            "/v1/domains",
            json=domain_body(
                f"vm{i}", [4096], target_mib=1024, dynamic_min_mib=1024, host_id=host["id"]
            ),
        ).json()["id"]
        for i in range(8)
    ]
    # 8 x 1024 allocated, 8192 free: 8 domains each asking for +3072 can't all get it.

    def grow(i: int) -> int:
        r = pg_client.put(f"/v1/domains/{ids[i]}/target", json={"target_mib": 4096})
        return r.status_code

    statuses = Counter(run_parallel(8, grow))
    assert set(statuses) <= {200, 409} and statuses[200] == 2, statuses
    audit(pg_client.app.state.sessionmaker)
    with pg_client.app.state.sessionmaker() as s:
        total = s.scalar(select(func.sum(Domain.target_mib)))
    assert total == 8 * 1024 + 2 * 3072


def test_parallel_idempotent_retries_create_once(pg_client: ApiClient) -> None:
    body = host_body("same", n=2)

    def create(_: int) -> tuple[int, str]:
        r = pg_client.post("/v1/hosts", json=body, headers={"Idempotency-Key": "k-1"})
        return r.status_code, r.json().get("id", "")

    results = run_parallel(12, create)
    assert {s for s, _ in results} == {201}, results
    assert len({i for _, i in results}) == 1
    with pg_client.app.state.sessionmaker() as s:
        assert s.scalar(select(func.count()).select_from(Pnode)) == 2


def test_20_migrations_racing_for_one_destination_never_overcommit_it(
    pg_client: ApiClient,
) -> None:
    src = pg_client.post("/v1/hosts", json=host_body("src", n=2, memory_mib=32768)).json()
    dst = pg_client.post("/v1/hosts", json=host_body("dst", n=2, memory_mib=4096)).json()
    ids = [
        pg_client.post(
            "/v1/domains",
            json=domain_body(f"vm{i}", [1024], dynamic_min_mib=1024, host_id=src["id"]),
        ).json()["id"]
        for i in range(20)
    ]

    def migrate(i: int) -> int:
        r = pg_client.post(
            "/v1/migrations", json={"domain_id": ids[i], "destination_host_id": dst["id"]}
        )
        return r.status_code

    statuses = Counter(run_parallel(20, migrate))
    assert statuses == {201: 8, 409: 12}, statuses
    audit(pg_client.app.state.sessionmaker)
    with pg_client.app.state.sessionmaker() as s:
        from service.db.models import Claim

        claimed = dict(
            s.execute(
                select(Claim.pnode, func.sum(Claim.mib))
                .where(Claim.host_id == dst["id"])
                .group_by(Claim.pnode)
            ).all()
        )
        pnodes = s.scalars(select(Pnode).where(Pnode.host_id == dst["id"])).all()
        for pn in pnodes:
            assert claimed.get(pn.index, 0) == pn.claimed_mib <= pn.capacity_mib
    assert sum(claimed.values()) == 8 * 1024


def test_a_read_request_sees_one_snapshot_across_its_statements(pg_client: ApiClient) -> None:
    """GET routes read in several statements (domains, then their backing). A domain moved to
    a host with more pnodes between two of them must not mix the old host's shape with the new
    host's rows (it did: an IndexError, a 500, under the load test)."""
    one = pg_client.post("/v1/hosts", json=host_body("one", n=1, memory_mib=1 << 15)).json()
    two = pg_client.post("/v1/hosts", json=host_body("two", n=2, memory_mib=1 << 15)).json()
    d = pg_client.post("/v1/domains", json=domain_body("mover", [2048], host_id=one["id"])).json()
    state = pg_client.app.state
    with state.read_sessionmaker() as reader:
        domain = core.load_domain(reader, d["id"])  # the request's first statement
        with state.sessionmaker() as writer:  # a migration lands meanwhile (rows as it leaves them)
            writer.execute(delete(Backing).where(Backing.domain_id == d["id"]))
            writer.execute(update(Domain).where(Domain.id == d["id"]).values(host_id=two["id"]))
            writer.add(Backing(domain_id=d["id"], vnode=0, host_id=two["id"], pnode=1, mib=2048))
            writer.commit()
        x, n_pnodes = core.backing_of(reader, [domain])[domain.id]
    assert n_pnodes == 1 and x.tolist() == [[2048]]  # the domain as it was when the read began
