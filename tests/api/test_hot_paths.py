"""Query budgets of the busy paths. The two routes orchestrators call most, GET a domain and PUT
its target: a fixed, small number of SQL statements, every statement's text parsed once by
psycopg, the same answers (body, ETag) as any other route. A squeeze: statements that do not
grow with the domains it retargets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg._queries as psycopg_queries
import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from service.db.apply import apply
from service.db.changes import ChangeSet, NewTarget
from service.db.invariants import audit
from service.db.loaders import load_host_accounting
from service.db.models import Domain, Pnode
from service.errors import Conflict
from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body
from tests.api.statements import count_statements


def _domain(client: ApiClient) -> dict[str, Any]:
    host = client.post("/v1/hosts", json=host_body("hot", n=2, memory_mib=1 << 16)).json()
    r = client.post("/v1/domains", json=domain_body("hot", [2048, 2048], host_id=host["id"]))
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def test_get_domain_is_one_statement_and_matches_the_put(client: ApiClient) -> None:
    d = _domain(client)
    n_put, put = count_statements(
        client, lambda: client.put(f"/v1/domains/{d['id']}/target", json={"target_mib": 3072})
    )
    assert put.status_code == 200, put.text
    n_get, got = count_statements(client, lambda: client.get(f"/v1/domains/{d['id']}"))
    # the domain, its vnodes, their backing and the host's pnode count and agent: one snapshot
    assert n_get == 1
    assert got.json() == put.json()
    assert got.headers["etag"] == put.headers["etag"] == f'"{put.json()["version"]}"'
    assert got.headers["content-type"] == "application/json"
    assert sum(sum(v["backing_mib"]) for v in got.json()["vnodes"]) == 3072
    if client.app.state.engine.dialect.name == "postgresql":
        # lock the host; the domain with its backing, the host's claims and whether failover
        # protection is on, in one snapshot under the lock; every write as one statement
        assert n_put == 3


def test_a_target_raise_with_protection_off_reads_no_settings_of_its_own(
    client: ApiClient,
) -> None:
    """A raise learns that failover protection is off from the statement that reads the
    domain's backing under the host lock: no cluster-settings SELECT of its own. With
    protection on it still checks the plan (`failover.admit`); turned off again (the setting
    then reads as null), it costs what a lowering costs again."""
    d = _domain(client)

    def lower_then_raise() -> tuple[int, int]:
        assert client.put(f"/v1/domains/{d['id']}/target", json={"target_mib": 3584}).is_success
        n_lower, low = count_statements(
            client, lambda: client.put(f"/v1/domains/{d['id']}/target", json={"target_mib": 2560})
        )
        n_raise, high = count_statements(
            client, lambda: client.put(f"/v1/domains/{d['id']}/target", json={"target_mib": 3584})
        )
        assert low.status_code == high.status_code == 200, (low.text, high.text)
        return n_lower, n_raise

    n_lower, n_raise = lower_then_raise()
    assert n_raise == n_lower
    assert client.patch("/v1/cluster", json={"ha": {"host_failures": 1}}).status_code == 200
    n_lower, n_raise = lower_then_raise()
    assert n_raise > n_lower  # the settings row, locked, and the plan's check
    assert client.patch("/v1/cluster", json={"ha": None}).status_code == 200
    n_lower, n_raise = lower_then_raise()
    assert n_raise == n_lower


@pytest.mark.postgres
def test_put_target_statements_are_parsed_once(
    pg_client: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write batch (~100 parameters, ~5 KB) must hit psycopg's query cache: re-parsing it
    on every call was a fifth of a target change's CPU, under the host lock."""
    d = _domain(pg_client)
    for target in (2048, 2560, 3072):  # warm: every statement shape seen once
        assert pg_client.put(
            f"/v1/domains/{d['id']}/target", json={"target_mib": target}
        ).is_success
    parsed: list[bytes] = []
    uncached = psycopg_queries._query2pg_nocache

    def spy(query: bytes, encoding: str) -> Any:
        parsed.append(query)
        return uncached(query, encoding)

    monkeypatch.setattr(psycopg_queries, "_query2pg_nocache", spy)
    for target in (2048, 2560, 3072, 3584):
        r = pg_client.put(f"/v1/domains/{d['id']}/target", json={"target_mib": target})
        assert r.status_code == 200, r.text
    assert parsed == []


def test_squeeze_writes_in_statements_that_do_not_grow_with_the_domains_it_changes(
    client: ApiClient,
) -> None:
    """Squeezing a host retargets every active domain on it: their backing, vnode targets and
    balloon steps go in a fixed number of statements, not a few per domain."""

    def squeeze_all(n: int) -> int:
        host = client.post("/v1/hosts", json=host_body(f"sq{n}", n=2, memory_mib=1 << 16)).json()
        for i in range(n):
            body = domain_body(f"sq{n}-{i}", [2048, 2048], dynamic_min_mib=1024, host_id=host["id"])
            assert client.post("/v1/domains", json=body).status_code == 201
        squeeze = f"/v1/hosts/{host['id']}/squeeze"
        count, r = count_statements(
            client, lambda: client.post(squeeze, json={"total_free_mib": (1 << 17) - n * 1024})
        )
        assert r.status_code == 200, r.text
        assert len(r.json()["domains"]) == n
        assert all(d["target_mib"] == 1024 for d in r.json()["domains"])
        return count

    assert squeeze_all(2) == squeeze_all(12)


@pytest.mark.parametrize("together", [1, 2])
def test_target_writes_keep_the_version_guard(client: ApiClient, together: int) -> None:
    """`apply` writes one target in the batch and several with one executemany; both refuse a
    domain changed since it was read, as the ORM's version check did (a 409 at the API)."""
    host = client.post("/v1/hosts", json=host_body("guard", n=2, memory_mib=1 << 16)).json()
    ids = [
        client.post(
            "/v1/domains", json=domain_body(f"guard{i}", [2048, 2048], host_id=host["id"])
        ).json()["id"]
        for i in range(together)
    ]
    factory = client.app.state.sessionmaker

    def retarget_all(s: Session) -> None:
        state = load_host_accounting(s, host["id"], lock=False, now=datetime.now(UTC))
        assert state is not None
        targets = [
            NewTarget(domain=d, target_mib=3072, set_at=datetime.now(UTC)) for d in state.domains
        ]
        apply(s, state, ChangeSet(targets=targets), now=datetime.now(UTC))

    with factory() as s:
        state = load_host_accounting(s, host["id"], lock=False, now=datetime.now(UTC))
        s.commit()  # ends the read (SQLite: releases the write lock); the rows stay loaded
        with factory() as other:  # a writer the first session does not see
            other.execute(update(Domain).where(Domain.id == ids[0]).values(version=99))
            other.commit()
        assert state is not None
        stale = [
            NewTarget(domain=d, target_mib=3072, set_at=datetime.now(UTC)) for d in state.domains
        ]
        with pytest.raises(Conflict):
            apply(s, state, ChangeSet(targets=stale), now=datetime.now(UTC))
        s.rollback()
    with factory() as s:
        retarget_all(s)
        s.commit()
    got = client.get(f"/v1/domains/{ids[0]}").json()
    assert got["memory"]["target_mib"] == 3072 and got["version"] == 100


def test_a_target_change_reads_nothing_of_the_other_domains_and_mends_bad_counters(
    client: ApiClient,
) -> None:
    """The rest of the host is its locked counters less the domain's own charges. Counters that
    would leave the others below zero are not trusted: the host is read row by row, and the
    change writes counters equal to the charges again."""
    d = _domain(client)
    other = client.post(
        "/v1/domains", json=domain_body("other", [1024], host_id=d["host_id"])
    ).json()
    with client.app.state.sessionmaker() as s:
        s.execute(update(Pnode).where(Pnode.host_id == d["host_id"]).values(allocated_mib=0))
        s.commit()
    r = client.put(f"/v1/domains/{d['id']}/target", json={"target_mib": 3072})
    assert r.status_code == 200, r.text
    totals = audit(client.app.state.sessionmaker)  # counters == charges of both domains
    assert totals["backing"] == 3072 + 1024, totals
    assert client.get(f"/v1/domains/{other['id']}").json()["memory"]["target_mib"] == 1024


def test_a_target_change_of_vnodes_backed_on_several_pnodes_reads_each_vnode_once(
    client: ApiClient,
) -> None:
    """The write reads the domain's vnodes with their backing cells, a vnode on the row of
    each of its cells: a vnode backed on two pnodes is still one vnode, with both cells."""
    host = client.post("/v1/hosts", json=host_body("split", n=2, memory_mib=4096)).json()
    r = client.post("/v1/domains", json=domain_body("split", [6144, 2048], host_id=host["id"]))
    assert r.status_code == 201, r.text
    d = r.json()

    def cells(out: dict[str, Any]) -> list[int]:
        return [sum(1 for m in v["backing_mib"] if m) for v in out["vnodes"]]

    for target in (7168, 8192):
        put = client.put(f"/v1/domains/{d['id']}/target", json={"target_mib": target})
        assert put.status_code == 200, put.text
        assert client.get(f"/v1/domains/{d['id']}").json() == put.json()
        assert [v["index"] for v in put.json()["vnodes"]] == [0, 1]
        assert sum(sum(v["backing_mib"]) for v in put.json()["vnodes"]) == target
        assert max(cells(put.json())) == 2  # vnode 0 spills onto the other pnode
