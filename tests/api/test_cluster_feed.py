"""The worker's kept copy of the cluster (service.db.cluster_feed) against a whole read, on
PostgreSQL: after every kind of write, and when transactions commit out of order."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from service.db.cluster import ClusterView, load_cluster
from service.db.cluster_feed import feed_for
from service.db.cluster_rows import read_whole
from tests.api.client import ApiClient
from tests.api.factories import created, domain_body, host_body

pytestmark = pytest.mark.postgres


def _whole(session: Session) -> dict[str, tuple[str, list[int], list[int], list[int], Any]]:
    rows, _ = read_whole(session)
    return {
        h: (
            rows.names[i],
            rows.free[i].tolist(),
            rows.cpus[i].tolist(),
            rows.load[i].tolist(),
            rows.slits[rows.keys[i]],
        )
        for i, h in enumerate(rows.ids)
    }


def _same_as_whole(client: ApiClient) -> ClusterView:
    """The kept copy, brought up to date, equals a whole read made just after it."""
    with client.app.state.sessionmaker() as s:
        view = load_cluster(s)
        whole = _whole(s)
    a = view.arrays
    assert view.ids == list(whole)  # same hosts, same (creation) order
    width = a.free_mib.shape[1]
    for i, host_id in enumerate(view.ids):
        name, free, cpus, load, slit = whole[host_id]
        p = len(free)
        assert view.names[i] == name
        assert a.free_mib[i, :p].tolist() == [max(f, 0) for f in free]
        assert a.cpus[i, :p].tolist() == cpus and a.load_vcpus[i, :p].tolist() == load
        assert not a.free_mib[i, p:width].any() and not a.cpus[i, p:width].any()
        assert a.shapes[int(a.shape[i])].tolist() == json.loads(slit)
    return view


def test_the_kept_copy_follows_every_kind_of_write(pg_client: ApiClient) -> None:
    client = pg_client
    feed = feed_for(client.app.state.engine)
    hosts = [
        created(client, "/v1/hosts", host_body(f"h{i}", n=n, per_socket=max(1, n // 2)))
        for i, n in enumerate([1, 2, 8, 2])
    ]
    _same_as_whole(client)
    assert feed.whole_reads == 1
    d = created(client, "/v1/domains", domain_body("a", [2048, 2048], vcpus_per_vnode=2))
    _same_as_whole(client)  # an unpinned create
    created(client, "/v1/domains", domain_body("b", [1024] * 4, host_id=hosts[2]["id"]))
    assert client.put(f"/v1/domains/{d['id']}/target", json={"target_mib": 2048}).is_success
    _same_as_whole(client)  # a pinned create and a retarget
    for state in ("maintenance", "active", "offline"):
        r = client.patch(f"/v1/hosts/{hosts[0]['id']}", json={"state": state})
        assert r.status_code == 200, r.text
        view = _same_as_whole(client)  # left, joined again (in creation order), left
        assert (hosts[0]["id"] in view.ids) == (state == "active")
    created(client, "/v1/hosts", host_body("late", n=16, per_socket=4))
    _same_as_whole(client)  # a host registered, wider than any kept
    assert client.delete(f"/v1/domains/{d['id']}").status_code == 204
    _same_as_whole(client)
    reads = feed.whole_reads
    assert reads <= 2  # the 16-node host could not fit the kept width
    assert client.delete(f"/v1/hosts/{hosts[1]['id']}").status_code == 204
    _same_as_whole(client)  # a deleted host leaves no row: counted, and read whole
    assert feed.whole_reads == reads + 1


def test_a_transaction_that_commits_after_a_later_one_is_not_missed(pg_client: ApiClient) -> None:
    """T1 changes host 1 and stays open; T2 changes host 2 and commits; the copy is brought up
    to date (T2 seen, T1 not yet); T1 commits: the next request must see it, although its
    transaction id is below one the copy has already seen."""
    client = pg_client
    one, two = (created(client, "/v1/hosts", host_body(f"h{i}", n=2)) for i in range(2))
    _same_as_whole(client)
    engine: Engine = client.app.state.engine
    bump = text(
        'UPDATE pnodes SET allocated_mib = allocated_mib + :mib WHERE host_id = :h AND "index" = 0'
    )
    with engine.connect() as t1, engine.connect() as t2:
        t1.execute(bump, {"mib": 1024, "h": one["id"]})
        t2.execute(bump, {"mib": 2048, "h": two["id"]})
        xids = [
            c.execute(text("SELECT pg_current_xact_id()::text::bigint")).scalar() for c in (t1, t2)
        ]
        assert xids[0] < xids[1]
        t2.commit()
        view = _same_as_whole(client)
        before = view.arrays.free_mib[view.ids.index(one["id"]), 0]
        t1.commit()
    view = _same_as_whole(client)
    assert view.arrays.free_mib[view.ids.index(one["id"]), 0] == before - 1024
    assert feed_for(engine).whole_reads == 1


def test_reads_and_writes_of_a_worker_share_one_kept_copy(pg_client: ApiClient) -> None:
    """Read sessions bind to an engine derived for REPEATABLE READ; it shares the pool, and so
    the copy: a preview (read) and an unpinned create (write) read the cluster whole once."""
    client = pg_client
    created(client, "/v1/hosts", host_body("h", n=2))
    shape: dict[str, Any] = {
        "vnodes": [{"size_mib": 1024, "vcpus": [0], "distances": [10]}],
        "memory": {"dynamic_min_mib": 512, "dynamic_max_mib": 1024, "target_mib": 1024},
    }
    assert client.post("/v1/placements", json=shape).status_code == 200
    created(client, "/v1/domains", dict(shape, name="vm"))
    assert client.post("/v1/placements", json=shape).status_code == 200
    read_engine = client.app.state.read_sessionmaker.kw["bind"]
    assert read_engine is not client.app.state.engine
    assert feed_for(read_engine) is feed_for(client.app.state.engine)
    assert feed_for(read_engine).whole_reads == 1


def test_what_a_transaction_that_wrote_sees_is_not_kept(pg_client: ApiClient) -> None:
    """A transaction sees its own uncommitted changes. Kept, they would outlive its rollback:
    the copy is only brought forward by transactions that have written nothing."""
    client = pg_client
    one = created(client, "/v1/hosts", host_body("h", n=2))
    view = _same_as_whole(client)
    before = int(view.arrays.free_mib[view.ids.index(one["id"]), 0])
    bump = text('UPDATE pnodes SET allocated_mib = 1024 WHERE host_id = :h AND "index" = 0')
    with client.app.state.sessionmaker() as s:
        s.execute(bump, {"h": one["id"]})
        mine = load_cluster(s)
        assert mine.arrays.free_mib[mine.ids.index(one["id"]), 0] == before - 1024
        s.rollback()
    view = _same_as_whole(client)
    assert view.arrays.free_mib[view.ids.index(one["id"]), 0] == before
