"""The one write path (issue #13) under hostile sequences and concurrent mixes, on PostgreSQL.

`apply` is the only writer of the pnode counters and `absorb` puts what it wrote into the loaded
rows as committed values, so the rows and the counters can only disagree if a write is skipped
that was needed (an "unchanged" check against a stale row), or two writes of one statement hit
the same row. Every round is audited from the rows, more strictly than
`service/db/invariants.py`:
allocated is the sum of the charges (a guest's actual size counts when larger than its backing),
claimed the sum of the live claims, load the vCPUs homed on the pnode, a running domain's vnode
targets are its backing rows' sums and add up to its target, and reports never move a version.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from numa_balloon_testing.clock import ManualClock as Clock
from numa_balloon_testing.server import Server
from service.app import create_app
from service.core.domains import lock_domain_host
from service.db.apply import apply
from service.db.changes import ChangeSet, NewTarget
from service.db.models import Backing, Claim, Domain, Pnode, Vnode
from service.db.session import make_engine, make_sessionmaker
from service.engine.accounting import charge_mib
from service.settings import Settings
from tests.api.client import ApiClient, api_client
from tests.api.factories import domain_body, host_body
from tests.conftest import ADMIN_TOKEN
from tests.reliability.hostile import Call, at_once, client, live_server

pytestmark = [pytest.mark.postgres, pytest.mark.reliability]

NO_5XX_OK = {200, 201, 204, 409, 412, 422}
Json = dict[str, Any]


# -- The auditor -------------------------------------------------------------------------------


def audit_rows(db_url: str, now: datetime | None = None) -> dict[str, int]:
    """Assert the write path's invariants from the rows; returns every domain's version."""
    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine)() as s:
            return _audit(s, now or datetime.now(UTC))
    finally:
        engine.dispose()


def _audit(s: Any, now: datetime) -> dict[str, int]:
    pnodes = s.scalars(select(Pnode)).all()
    n_pnodes: dict[str, int] = {}
    for pn in pnodes:
        n_pnodes[pn.host_id] = max(n_pnodes.get(pn.host_id, 0), pn.index + 1)
    domains = s.scalars(select(Domain)).all()
    vnodes: dict[str, list[Any]] = {}
    for vn in s.scalars(select(Vnode).order_by(Vnode.domain_id, Vnode.index)).all():
        vnodes.setdefault(vn.domain_id, []).append(vn)
    backing_rows = s.execute(
        select(Backing.domain_id, Backing.host_id, Backing.vnode, Backing.pnode, Backing.mib)
    ).all()
    allocated: dict[tuple[str, int], int] = {}
    load: dict[tuple[str, int], int] = {}
    for d in domains:
        if d.host_id is None:
            continue
        vns = vnodes.get(d.id, [])
        k, p = len(vns), n_pnodes[d.host_id]
        x = np.zeros((1, k, p), dtype=np.int64)
        for dom, host, v, pn, mib in backing_rows:
            if dom == d.id:
                assert host == d.host_id, f"domain {d.name}: backing row on host {host}"
                x[0, v, pn] = mib
        actual = np.array([[-1 if vn.actual_mib is None else vn.actual_mib for vn in vns]])
        home = np.array([[vn.home_pnode or 0 for vn in vns]])
        charge = charge_mib(backing_mib=x, actual_mib=actual, home=home)[0].sum(axis=0)
        for i, c in enumerate(charge.tolist()):
            allocated[(d.host_id, i)] = allocated.get((d.host_id, i), 0) + int(c)
        for vn in vns:
            if vn.home_pnode is not None:
                key = (d.host_id, vn.home_pnode)
                load[key] = load.get(key, 0) + vn.vcpu_count
        if d.state == "running":
            rows = x[0].sum(axis=1).tolist()
            targets = [vn.target_mib for vn in vns]
            assert targets == rows, f"domain {d.name}: vnode targets {targets} != backing {rows}"
            assert sum(targets) == d.target_mib, (
                f"domain {d.name}: vnode targets {targets} do not add up to {d.target_mib}"
            )
    claimed: dict[tuple[str, int], int] = {}
    for c in s.scalars(select(Claim)).all():
        if c.expires_at is None or c.expires_at > now:
            claimed[(c.host_id, c.pnode)] = claimed.get((c.host_id, c.pnode), 0) + c.mib
    for pn in pnodes:
        key = (pn.host_id, pn.index)
        assert pn.allocated_mib == allocated.get(key, 0), (
            f"pnode {key}: allocated {pn.allocated_mib} != charges {allocated.get(key, 0)}"
        )
        assert pn.claimed_mib == claimed.get(key, 0), (
            f"pnode {key}: claimed {pn.claimed_mib} != live claims {claimed.get(key, 0)}"
        )
        assert pn.load_vcpus == load.get(key, 0), f"pnode {key}: load {pn.load_vcpus}"
        assert pn.allocated_mib + pn.claimed_mib <= pn.capacity_mib, f"pnode {key} overcommitted"
    return {d.id: d.version for d in domains}


def no_5xx(*answers: httpx.Response) -> None:
    assert all(a.status_code in NO_5XX_OK for a in answers), [
        (a.request.method, a.request.url.path, a.status_code, a.text) for a in answers
    ]


# -- Calls ------------------------------------------------------------------------------------


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def guest_report(token: str, actual: list[int]) -> Call:
    body = {"vnodes": [{"index": v, "actual_mib": m} for v, m in enumerate(actual)]}
    return lambda http: http.put("/v1/guest/balloon", json=body, headers=_bearer(token))


def agent_report(host: Json, domains: dict[str, list[int]], free_mib: int = 1024) -> Call:
    body = {
        "pnodes": [{"index": i, "free_mib": free_mib} for i in range(2)],
        "domains": [
            {
                "domain_id": did,
                "vnodes": [{"index": v, "actual_mib": m} for v, m in enumerate(sizes)],
            }
            for did, sizes in domains.items()
        ],
    }
    path = f"/v1/agent/hosts/{host['id']}/report"
    return lambda http: http.post(path, json=body, headers=_bearer(host["agent_token"]))


def retarget(domain_id: str, target_mib: int) -> Call:
    body = {"target_mib": target_mib}
    return lambda http: http.put(f"/v1/domains/{domain_id}/target", json=body)


def squeeze(host_id: str, total_free_mib: int | None = None) -> Call:
    body: Json = {"balance": True} if total_free_mib is None else {"total_free_mib": total_free_mib}
    return lambda http: http.post(f"/v1/hosts/{host_id}/squeeze", json=body)


def rebalance(host_id: str) -> Call:
    return lambda http: http.post(f"/v1/hosts/{host_id}/rebalance", json={"budget_mib": 4096})


def ack(host: Json, step_id: str) -> Call:
    path = f"/v1/agent/hosts/{host['id']}/steps/{step_id}/ack"
    body = {"ok": True, "detail": "done"}
    return lambda http: http.post(path, json=body, headers=_bearer(host["agent_token"]))


# -- World ------------------------------------------------------------------------------------


def make_host(http: Any, name: str, memory_mib: int = 4096) -> Json:
    r = http.post("/v1/hosts", json=host_body(name, n=2, memory_mib=memory_mib, cpus=8))
    assert r.status_code == 201, r.text
    out: Json = r.json()
    return out


def make_domain(http: Any, name: str, host_id: str, vnode_mib: int = 640) -> Json:
    body = domain_body(name, [vnode_mib, vnode_mib], host_id=host_id)
    body["memory"]["dynamic_min_mib"] = vnode_mib // 2
    r = http.post("/v1/domains", json=body)
    assert r.status_code == 201, r.text
    out: Json = r.json()
    return out


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pg(postgres_db_url: str, clock: Clock) -> Iterator[ApiClient]:
    """The app in process on PostgreSQL, on a clock the test moves."""
    settings = Settings(database_url=postgres_db_url, admin_token=ADMIN_TOKEN)
    app: FastAPI = create_app(settings, clock=clock)
    with api_client(app, ADMIN_TOKEN) as c:
        yield c
    app.state.engine.dispose()


def as_guest(c: ApiClient, dom: Json, actual: list[int]) -> httpx.Response:
    body = {"vnodes": [{"index": v, "actual_mib": m} for v, m in enumerate(actual)]}
    return c.put("/v1/guest/balloon", token=dom["guest_token"], json=body)


def as_agent(c: ApiClient, host: Json, domains: dict[str, list[int]]) -> httpx.Response:
    body = {
        "pnodes": [{"index": 0, "free_mib": 1024}, {"index": 1, "free_mib": 1024}],
        "domains": [
            {"domain_id": did, "vnodes": [{"index": v, "actual_mib": m} for v, m in enumerate(a)]}
            for did, a in domains.items()
        ],
    }
    path = f"/v1/agent/hosts/{host['id']}/report"
    return c.post(path, token=host["agent_token"], json=body)


def versions(c: ApiClient, *ids: str) -> list[int]:
    return [c.get(f"/v1/domains/{i}").json()["version"] for i in ids]


# -- Sequences, in process ----------------------------------------------------------------------


def test_a_guest_that_keeps_its_memory_is_charged_until_it_lets_go(
    pg: ApiClient, postgres_db_url: str, clock: Clock
) -> None:
    """Retarget down under a guest that reported its full size: the charge stays at the actual
    size (the counters do not move although the backing does), then falls report by report."""
    host = make_host(pg, "h")
    dom = make_domain(pg, "vm", host["id"])
    other = make_domain(pg, "vm2", host["id"])
    no_5xx(as_guest(pg, dom, [640, 640]))
    audit_rows(postgres_db_url, clock.now)
    before = versions(pg, dom["id"], other["id"])
    no_5xx(pg.put(f"/v1/domains/{dom['id']}/target", json={"target_mib": 640}))
    audit_rows(postgres_db_url, clock.now)
    for actual in ([640, 640], [480, 640], [320, 500], [320, 320], [320, 320]):
        clock.advance(1)
        no_5xx(as_guest(pg, dom, actual))
        audit_rows(postgres_db_url, clock.now)
        no_5xx(as_agent(pg, host, {dom["id"]: actual, other["id"]: [640, 640]}))
        audit_rows(postgres_db_url, clock.now)
    assert versions(pg, dom["id"], other["id"]) == [before[0] + 1, before[1]]
    # Up again, then the guest reports more than it was ever given: capped, never charged.
    no_5xx(pg.put(f"/v1/domains/{dom['id']}/target", json={"target_mib": 1280}))
    no_5xx(as_guest(pg, dom, [9999, 9999]), as_agent(pg, host, {dom["id"]: [9999, 9999]}))
    audit_rows(postgres_db_url, clock.now)


def test_reports_never_move_a_version_even_when_they_flag_or_clear_a_driver(
    pg: ApiClient, postgres_db_url: str, clock: Clock
) -> None:
    host = make_host(pg, "h")
    doms = [make_domain(pg, f"vm{i}", host["id"]) for i in range(3)]
    ids = [d["id"] for d in doms]
    for d in doms:
        no_5xx(as_guest(pg, d, [640, 640]))
    no_5xx(pg.put(f"/v1/domains/{ids[0]}/target", json={"target_mib": 800}))
    no_5xx(pg.put(f"/v1/domains/{ids[1]}/target", json={"target_mib": 900}))
    before = versions(pg, *ids)
    clock.advance(60)  # past uncooperative_after_s: the next heartbeat flags both
    no_5xx(as_agent(pg, host, {i: [640, 640] for i in ids}))
    flagged = [pg.get(f"/v1/domains/{i}").json() for i in ids]
    assert [f.get("uncooperative") for f in flagged] == [True, True, False], flagged
    audit_rows(postgres_db_url, clock.now)
    # One batch report: one driver reaches its target (cleared), one makes progress, one idles.
    no_5xx(as_agent(pg, host, {ids[0]: [400, 400], ids[1]: [600, 600], ids[2]: [640, 640]}))
    audit_rows(postgres_db_url, clock.now)
    no_5xx(as_guest(pg, doms[1], [450, 450]))
    audit_rows(postgres_db_url, clock.now)
    assert versions(pg, *ids) == before
    assert [pg.get(f"/v1/domains/{i}").json().get("uncooperative") for i in ids] == [
        False,
        False,
        False,
    ]


def test_a_squeeze_leaves_a_held_driver_exactly_as_it_was(
    pg: ApiClient, postgres_db_url: str, clock: Clock
) -> None:
    """The engine holds an inactive domain's target at its actual size (here above its target):
    the squeeze must not write that as a new target without new backing."""
    host = make_host(pg, "h")
    stuck = make_domain(pg, "stuck", host["id"])
    ok = make_domain(pg, "ok", host["id"])
    no_5xx(as_guest(pg, stuck, [640, 640]))
    no_5xx(pg.put(f"/v1/domains/{stuck['id']}/target", json={"target_mib": 640}))
    clock.advance(10)  # past inactive_after_s: the stuck driver is held by squeezes
    no_5xx(as_guest(pg, stuck, [640, 640]))
    before = pg.get(f"/v1/domains/{stuck['id']}").json()
    r = pg.post(f"/v1/hosts/{host['id']}/squeeze", json={"total_free_mib": 4096})
    no_5xx(r)
    held = {d["domain_id"]: d["held"] for d in r.json()["domains"]}
    assert held == {stuck["id"]: True, ok["id"]: False}
    after = pg.get(f"/v1/domains/{stuck['id']}").json()
    audit_rows(postgres_db_url, clock.now)
    assert after["memory"]["target_mib"] == before["memory"]["target_mib"]
    assert after["version"] == before["version"]


def spread_world(http: Any, tag: str) -> tuple[Json, Json, Json]:
    """A host whose vm is spread over both pnodes, then room at its home: a rebalance moves
    1 GiB home (as in tests/api/test_migrations.py). Returns the host, the vm, the filler left."""
    host = make_host(http, tag, memory_mib=3072)
    one = {"dynamic_min_mib": 1024, "dynamic_max_mib": 2048, "target_mib": 2048}
    fillers = []
    for i in range(2):
        body = {
            "name": f"{tag}-filler{i}",
            "host_id": host["id"],
            "memory": one,
            "vnodes": [{"size_mib": 2048, "vcpus": [0], "distances": [10]}],
        }
        r = http.post("/v1/domains", json=body)
        assert r.status_code == 201, r.text
        fillers.append(r.json())
    body = {
        "name": f"{tag}-vm",
        "host_id": host["id"],
        "memory": one,
        "vnodes": [{"size_mib": 2048, "vcpus": [0, 1], "distances": [10]}],
    }
    r = http.post("/v1/domains", json=body)
    assert r.status_code == 201, r.text
    vm: Json = r.json()
    assert sorted(vm["vnodes"][0]["backing_mib"]) == [1024, 1024], vm
    home = vm["vnodes"][0]["home_pnode"]
    gone, kept = sorted(fillers, key=lambda f: f["vnodes"][0]["home_pnode"] != home)
    assert http.delete(f"/v1/domains/{gone['id']}").status_code == 204
    return host, vm, kept


def test_a_rebalance_between_reports_keeps_charges_on_the_new_cells(
    pg: ApiClient, postgres_db_url: str, clock: Clock
) -> None:
    """Reports before and after block moves (a guest that still holds memory above a lowered
    target): the excess follows the backing to its new pnodes, and the counters with it."""
    moves = 0
    for rnd in range(3):
        host, vm, kept = spread_world(pg, f"rb{rnd}")
        no_5xx(as_guest(pg, vm, [2048]))
        if rnd:
            no_5xx(pg.put(f"/v1/domains/{vm['id']}/target", json={"target_mib": 1024 + 512 * rnd}))
        audit_rows(postgres_db_url, clock.now)
        r = pg.post(f"/v1/hosts/{host['id']}/rebalance", json={"budget_mib": 4096})
        no_5xx(r)
        moves += len(r.json()["moves"])
        audit_rows(postgres_db_url, clock.now)
        clock.advance(1)
        no_5xx(as_agent(pg, host, {vm["id"]: [1900], kept["id"]: [2048]}))
        audit_rows(postgres_db_url, clock.now)
        no_5xx(as_guest(pg, vm, [1024]))
        audit_rows(postgres_db_url, clock.now)
        no_5xx(pg.post(f"/v1/hosts/{host['id']}/rebalance", json={"budget_mib": 4096}))
        audit_rows(postgres_db_url, clock.now)
    assert moves, "no rebalance moved a block: the sequence tests nothing"


def _steps(c: ApiClient, host: Json, migration_id: str, phase: str) -> list[Json]:
    r = c.get(f"/v1/agent/hosts/{host['id']}/steps", token=host["agent_token"])
    return [
        s for s in r.json()["items"] if s["migration_id"] == migration_id and s["phase"] == phase
    ]


def _ack_all(c: ApiClient, host: Json, migration_id: str, phase: str) -> None:
    for s in _steps(c, host, migration_id, phase):
        r = c.post(
            f"/v1/agent/hosts/{host['id']}/steps/{s['id']}/ack",
            token=host["agent_token"],
            json={"ok": True, "detail": "done"},
        )
        no_5xx(r)


def test_a_migration_whose_hosts_both_report_meanwhile(
    pg: ApiClient, postgres_db_url: str, clock: Clock
) -> None:
    """Both agents and the guest report at every phase; after the switch the source agent still
    names the domain once (listed as unknown, nothing written), the guest reports to the
    destination."""
    src = make_host(pg, "src", memory_mib=8192)
    dst = make_host(pg, "dst", memory_mib=768)  # smaller: the guest must balloon down first
    dom = make_domain(pg, "vm", src["id"])
    stay_src = make_domain(pg, "stay-src", src["id"])
    stay_dst = make_domain(pg, "stay-dst", dst["id"], vnode_mib=256)

    def everyone_reports(actual: list[int]) -> None:
        clock.advance(1)
        no_5xx(as_guest(pg, dom, actual))
        audit_rows(postgres_db_url, clock.now)
        no_5xx(as_agent(pg, src, {dom["id"]: actual, stay_src["id"]: [640, 640]}))
        audit_rows(postgres_db_url, clock.now)
        no_5xx(as_agent(pg, dst, {dom["id"]: actual, stay_dst["id"]: [256, 256]}))
        audit_rows(postgres_db_url, clock.now)

    everyone_reports([640, 640])
    r = pg.post("/v1/migrations", json={"domain_id": dom["id"], "destination_host_id": dst["id"]})
    assert r.status_code == 201, r.text
    mid = r.json()["id"]
    everyone_reports([640, 640])
    assert pg.post(f"/v1/migrations/{mid}/advance").json()["state"] == "preparing"
    everyone_reports([640, 640])
    no_5xx(pg.post(f"/v1/hosts/{src['id']}/squeeze", json={"balance": True}))
    audit_rows(postgres_db_url, clock.now)
    carried = [vn["target_mib"] for vn in pg.get(f"/v1/domains/{dom['id']}").json()["vnodes"]]
    assert sum(carried) < 1280, carried
    everyone_reports(carried)
    _ack_all(pg, src, mid, "prepare")
    m = pg.get(f"/v1/migrations/{mid}").json()
    if m["state"] == "preparing":
        assert pg.post(f"/v1/migrations/{mid}/advance").json()["state"] == "migrating"
    everyone_reports(carried)
    _ack_all(pg, src, mid, "migrate")
    if pg.get(f"/v1/migrations/{mid}").json()["state"] == "migrating":
        assert pg.post(f"/v1/migrations/{mid}/advance").json()["state"] == "settling"
    audit_rows(postgres_db_url, clock.now)
    # Just moved: the source agent's next report still names it.
    src_before = pg.get(f"/v1/hosts/{src['id']}/accounting").json()["pnodes"]
    r = as_agent(pg, src, {dom["id"]: carried, stay_src["id"]: [640, 640]})
    no_5xx(r)
    assert r.json()["unknown_domains"] == [dom["id"]]
    src_after = pg.get(f"/v1/hosts/{src['id']}/accounting").json()["pnodes"]
    assert [p["allocated_mib"] for p in src_after] == [p["allocated_mib"] for p in src_before]
    everyone_reports(carried)
    _ack_all(pg, dst, mid, "settle")
    _ack_all(pg, src, mid, "release")
    _ack_all(pg, dst, mid, "release")
    everyone_reports(carried)
    if pg.get(f"/v1/migrations/{mid}").json()["state"] == "settling":
        no_5xx(pg.post(f"/v1/migrations/{mid}/advance"))
    everyone_reports([9999, 9999])
    final = audit_rows(postgres_db_url, clock.now)
    assert pg.get(f"/v1/migrations/{mid}").json()["state"] == "completed"
    assert dom["id"] in final


def test_an_agent_report_that_clears_a_gate_moves_an_auto_advance_migration_on(
    pg: ApiClient, postgres_db_url: str, clock: Clock
) -> None:
    src = make_host(pg, "src", memory_mib=8192)
    dst = make_host(pg, "dst", memory_mib=768)
    dom = make_domain(pg, "vm", src["id"])
    make_domain(pg, "bystander", dst["id"], vnode_mib=256)
    body = {"domain_id": dom["id"], "destination_host_id": dst["id"], "auto_advance": True}
    r = pg.post("/v1/migrations", json=body)
    assert r.status_code == 201, r.text
    mid = r.json()["id"]
    assert pg.get(f"/v1/migrations/{mid}").json()["state"] == "preparing"
    carried = [vn["target_mib"] for vn in pg.get(f"/v1/domains/{dom['id']}").json()["vnodes"]]
    no_5xx(as_agent(pg, src, {dom["id"]: carried}))
    audit_rows(postgres_db_url, clock.now)
    m = pg.get(f"/v1/migrations/{mid}").json()
    assert all(s["state"] == "acked" for s in m["steps"] if s["phase"] == "prepare"), m["steps"]
    prepare = [s for s in m["steps"] if s["phase"] == "prepare"]
    again = pg.post(
        f"/v1/agent/hosts/{src['id']}/steps/{prepare[0]['id']}/ack",
        token=src["agent_token"],
        json={"ok": True, "detail": "done"},
    )
    no_5xx(again)  # a retried ack: same answer, and no drive either
    assert pg.get(f"/v1/migrations/{mid}").json()["state"] == "migrating"


def test_one_change_set_may_move_a_backing_and_record_a_report_of_the_same_domain(
    pg: ApiClient, postgres_db_url: str, clock: Clock
) -> None:
    host = make_host(pg, "h")
    dom = make_domain(pg, "vm", host["id"])
    engine = make_engine(postgres_db_url)
    try:
        with make_sessionmaker(engine)() as s:
            domain, state = lock_domain_host(s, dom["id"], clock.now)
            backing = state.backing[domain.id].copy()
            backing[0] = backing[0] * 4 // 5  # same cells, a smaller vnode 0: one UPDATE
            changes = ChangeSet(
                backing={domain.id: backing},
                targets=[NewTarget(domain=domain, target_mib=int(backing.sum()), set_at=clock.now)],
                actual_mib={domain.id: {0: 600}},
            )
            apply(s, state, changes, now=clock.now)
            s.commit()
    finally:
        engine.dispose()
    vnodes = pg.get(f"/v1/domains/{dom['id']}").json()["vnodes"]
    assert [vn["target_mib"] for vn in vnodes] == backing.sum(axis=1).tolist()
    assert vnodes[0]["actual_mib"] == 600
    audit_rows(postgres_db_url, clock.now)


@pytest.fixture
def late_clock() -> Clock:
    """An hour behind the wall clock: a planned claim's lease has lapsed by the wall clock only."""
    return Clock(datetime.now(UTC) - timedelta(hours=1))


@pytest.fixture
def late(postgres_db_url: str, late_clock: Clock) -> Iterator[ApiClient]:
    settings = Settings(database_url=postgres_db_url, admin_token=ADMIN_TOKEN)
    app: FastAPI = create_app(settings, clock=late_clock)
    with api_client(app, ADMIN_TOKEN) as c:
        yield c
    app.state.engine.dispose()


def test_reports_judge_claims_on_the_request_clock_like_every_other_writer(
    late: ApiClient, postgres_db_url: str, late_clock: Clock
) -> None:
    src = make_host(late, "src", memory_mib=8192)
    dst = make_host(late, "dst", memory_mib=4096)
    dom = make_domain(late, "vm", src["id"])
    bystander = make_domain(late, "bystander", dst["id"], vnode_mib=256)
    body = {"domain_id": dom["id"], "destination_host_id": dst["id"]}
    r = late.post("/v1/migrations", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "planned", r.text  # its 300 s lease runs on the app's clock
    audit_rows(postgres_db_url, late_clock.now)
    no_5xx(late.put(f"/v1/domains/{bystander['id']}/target", json={"target_mib": 384}))
    audit_rows(postgres_db_url, late_clock.now)  # set_target loads claims at `now`: exact
    no_5xx(as_guest(late, bystander, [256, 256]))
    audit_rows(postgres_db_url, late_clock.now)  # the guest report dropped the claim
    no_5xx(as_agent(late, dst, {bystander["id"]: [192, 192]}))
    audit_rows(postgres_db_url, late_clock.now)


# -- Concurrent mixes, on 2 uvicorn workers ----------------------------------------------------


ROUNDS = 20


def test_guest_and_agent_reports_retargets_and_squeezes_on_one_host_at_once(
    postgres_db_url: str,
) -> None:
    with live_server(postgres_db_url) as server, client(server) as http:
        host = make_host(http, "mix")
        doms = [make_domain(http, f"mix-{i}", host["id"]) for i in range(4)]
        ids = [d["id"] for d in doms]
        succeeded = [0] * 6
        for rnd in range(ROUNDS):
            held = [640 - 32 * ((rnd + i) % 5) for i in range(2)]
            calls = [
                guest_report(doms[0]["guest_token"], held),
                guest_report(doms[1]["guest_token"], held[::-1]),
                agent_report(host, {i: [640, 640 - 16 * (rnd % 4)] for i in ids}),
                retarget(ids[rnd % 4], 640 + 128 * (rnd % 5)),
                retarget(ids[(rnd + 1) % 4], 1280 - 128 * (rnd % 3)),
                squeeze(host["id"], 1024 + 256 * (rnd % 4)),
            ]
            answers = at_once(server, calls)
            no_5xx(*answers)
            succeeded = [
                n + (a.status_code == 200) for n, a in zip(succeeded, answers, strict=True)
            ]
            audit_rows(postgres_db_url)
            no_5xx(squeeze(host["id"])(http))
            audit_rows(postgres_db_url)
        assert all(succeeded), f"some kind of call never went through: {succeeded}"


def test_concurrent_reports_and_heartbeats_move_no_version(postgres_db_url: str) -> None:
    """Only status writes at once (guests, the batch report, the single heartbeat): counters
    stay exact and no domain's or host's version moves."""
    with live_server(postgres_db_url) as server, client(server) as http:
        host = make_host(http, "status")
        doms = [make_domain(http, f"status-{i}", host["id"]) for i in range(3)]
        for d in doms[:2]:
            no_5xx(retarget(d["id"], 768)(http))
        before = audit_rows(postgres_db_url)
        host_version = http.get(f"/v1/hosts/{host['id']}").json()["version"]
        heartbeat = {"pnodes": [{"index": 0, "free_mib": 100}, {"index": 1, "free_mib": 4000}]}
        observed = f"/v1/agent/hosts/{host['id']}/observed"
        for rnd in range(15):
            shrink = [640 - 64 * (rnd % 4), 640 - 32 * (rnd % 5)]
            calls = [
                guest_report(doms[0]["guest_token"], shrink),
                guest_report(doms[1]["guest_token"], shrink[::-1]),
                guest_report(doms[2]["guest_token"], [640, 640]),
                agent_report(host, {d["id"]: shrink for d in doms}, free_mib=500 * (rnd % 3)),
                lambda h: h.put(observed, json=heartbeat, headers=_bearer(host["agent_token"])),
            ]
            no_5xx(*at_once(server, calls))
            audit_rows(postgres_db_url)
        assert audit_rows(postgres_db_url) == before
        assert http.get(f"/v1/hosts/{host['id']}").json()["version"] == host_version


def test_reports_race_rebalances(postgres_db_url: str) -> None:
    with live_server(postgres_db_url) as server, client(server) as http:
        for rnd in range(8):
            host, vm, kept = spread_world(http, f"rb{rnd}")
            calls = [
                rebalance(host["id"]),
                guest_report(vm["guest_token"], [2048 - 128 * (rnd % 3)]),
                agent_report(host, {vm["id"]: [2048], kept["id"]: [2048 - 64 * (rnd % 2)]}),
                retarget(vm["id"] if rnd % 2 else kept["id"], 1536),
                rebalance(host["id"]),
            ]
            no_5xx(*at_once(server, calls))
            audit_rows(postgres_db_url)


def test_reports_naming_domains_created_and_deleted_meanwhile(postgres_db_url: str) -> None:
    """The agent names a domain being deleted and its guest reports once more; another domain
    is created on the host at the same instant: a report of the dead is unknown or refused
    (401 once its token is revoked, 404 or 409 when the domain went), never a 5xx or a stale
    charge."""
    with live_server(postgres_db_url) as server, client(server) as http:
        host = make_host(http, "churn")
        keep = make_domain(http, "churn-keep", host["id"])
        for rnd in range(12):
            doomed = make_domain(http, f"churn-doomed{rnd}", host["id"])
            reports = {doomed["id"]: [600, 600], keep["id"]: [640 - 32 * (rnd % 3), 640]}
            calls = [
                lambda h, d=doomed: h.delete(f"/v1/domains/{d['id']}"),
                agent_report(host, reports),
                guest_report(doomed["guest_token"], [500, 500]),
                lambda h, r=rnd: h.post(
                    "/v1/domains",
                    json=domain_body(f"churn-new{r}", [256, 256], host_id=host["id"]),
                ),
                retarget(keep["id"], 640 + 128 * (rnd % 5)),
                squeeze(host["id"], 1024),
            ]
            answers = at_once(server, calls)
            assert answers[2].status_code in {200, 401, 404, 409}, answers[2].text
            no_5xx(*answers[:2], *answers[3:])
            audit_rows(postgres_db_url)
            again = agent_report(host, reports)(http)
            no_5xx(again)
            assert doomed["id"] in again.json()["unknown_domains"]
            audit_rows(postgres_db_url)


def _migration_round(server: Server, http: httpx.Client, db_url: str, rnd: int) -> None:
    """One auto-advancing migration; each phase's acks race the guest, both agents, a retarget
    of a bystander and a squeeze of the source."""
    src = make_host(http, f"src{rnd}", memory_mib=8192)
    dst = make_host(http, f"dst{rnd}", memory_mib=1024)
    dom = make_domain(http, f"mig{rnd}", src["id"])
    by_src = make_domain(http, f"by-src{rnd}", src["id"])
    by_dst = make_domain(http, f"by-dst{rnd}", dst["id"], vnode_mib=256)
    body = {"domain_id": dom["id"], "destination_host_id": dst["id"], "auto_advance": True}
    r = http.post("/v1/migrations", json=body)
    assert r.status_code == 201, r.text
    mid = r.json()["id"]
    hosts = {src["id"]: src, dst["id"]: dst}

    def noise(actual: list[int]) -> list[Call]:
        return [
            guest_report(dom["guest_token"], actual),
            agent_report(src, {dom["id"]: actual, by_src["id"]: [640, 600]}),
            agent_report(dst, {dom["id"]: actual, by_dst["id"]: [256, 200]}),
            retarget(by_src["id"], 640 + 128 * (rnd % 3)),
            squeeze(src["id"]),
        ]

    for phase in ("prepare", "migrate", "settle"):
        m = http.get(f"/v1/migrations/{mid}").json()
        steps = [s for s in m["steps"] if s["phase"] == phase and s["state"] == "pending"]
        vnodes = http.get(f"/v1/domains/{dom['id']}").json()["vnodes"]
        acks = [ack(hosts[s["host_id"]], s["id"]) for s in steps]
        no_5xx(*at_once(server, acks + noise([vn["target_mib"] for vn in vnodes])))
        audit_rows(db_url)
    for call in noise([9999, 9999]):
        no_5xx(call(http))
    audit_rows(db_url)
    assert http.get(f"/v1/migrations/{mid}").json()["state"] == "completed"


def test_a_migration_while_both_hosts_report_concurrently(postgres_db_url: str) -> None:
    with live_server(postgres_db_url) as server, client(server) as http:
        for rnd in range(4):
            _migration_round(server, http, postgres_db_url, rnd)
