"""Admission checks (one change re-checked on a kept plan) against planning from scratch and
against the brute-force oracle, over drawn clusters and drawn changes, chained."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.engine.failover import (
    DomainChange,
    FailoverState,
    HostChange,
    check_change,
    plan_failover,
)
from tests.engine import failover_oracle as oracle
from tests.engine.failover_cases import SIZES, Case, clusters, engine_inputs, slit

Change = tuple[tuple[HostChange, ...], tuple[DomainChange, ...]]


def _less_free(draw: st.DrawFn, hosts: list[oracle.OHost], h: int) -> tuple[HostChange, ...]:
    """Host ``h`` loses some free MiB (what a create or a raise takes there)."""
    less = tuple(max(0, f - draw(st.sampled_from(SIZES))) for f in hosts[h].free)
    hosts[h] = dataclasses.replace(hosts[h], free=less)
    return (HostChange(host=h, free_mib=np.array(less, dtype=np.int64)),)


@st.composite
def change(draw: st.DrawFn, case: Case) -> tuple[Case, Change]:
    """A change the core would check, and the case it leads to (domains keep their index; an
    unprotected domain keeps its place with host -1 and is dropped by ``_live``)."""
    hosts, doms = list(case.hosts), list(case.domains)
    live = [i for i, d in enumerate(doms) if d.host >= 0]
    kinds = ("create", "maintenance", "free") + (("raise", "move", "unprotect") if live else ())
    kind = draw(st.sampled_from(kinds))
    h = draw(st.integers(0, len(hosts) - 1))
    i = draw(st.sampled_from(live)) if live else -1
    hc: tuple[HostChange, ...] = ()
    if kind == "create":
        v = draw(st.integers(1, 3))
        restart = tuple(draw(st.sampled_from(SIZES)) for _ in range(v))
        vcpus = tuple(draw(st.integers(0, 2)) for _ in range(v))
        doms.append(oracle.ODomain(h, restart, vcpus, draw(slit(v)), None))
        hc = _less_free(draw, hosts, h)
        dc = DomainChange(domain=None, host=h, guest=_guest(doms[-1]))
    elif kind == "free":  # a domain deleted or shrunk there, or back from maintenance
        more = tuple(f + draw(st.sampled_from(SIZES)) for f in hosts[h].free)
        hosts[h] = dataclasses.replace(hosts[h], free=more, eligible=True)
        change = HostChange(host=h, free_mib=np.array(more, dtype=np.int64), eligible=True)
        return Case(tuple(hosts), tuple(doms), case.spread), ((change,), ())
    elif kind == "maintenance":
        hosts[h] = dataclasses.replace(hosts[h], eligible=False)
        return Case(tuple(hosts), tuple(doms), case.spread), (
            (HostChange(host=h, eligible=False),),
            (),
        )
    elif kind == "raise":
        bigger = tuple(x + draw(st.sampled_from((256, 1024))) for x in doms[i].restart)
        doms[i] = dataclasses.replace(doms[i], restart=bigger)
        hc = _less_free(draw, hosts, doms[i].host)
        dc = DomainChange(domain=i, host=doms[i].host, guest=_guest(doms[i]))
    elif kind == "move":
        doms[i] = dataclasses.replace(doms[i], host=h)
        dc = DomainChange(domain=i, host=h, guest=_guest(doms[i]))
    else:
        dc = DomainChange(domain=i, host=doms[i].host, guest=None)
        doms[i] = dataclasses.replace(doms[i], host=-1)
    return Case(tuple(hosts), tuple(doms), case.spread), (hc, (dc,))


def _guest(d: oracle.ODomain) -> object:
    _, pd = engine_inputs(
        (oracle.OHost((0,), (0,), ((10,),), True),), (dataclasses.replace(d, host=0),)
    )
    return pd.guests[0]


def _live(case: Case) -> Case:
    return Case(case.hosts, tuple(d for d in case.domains if d.host >= 0), case.spread)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), clusters(), st.integers(1, 2))
def test_admission_agrees_with_planning_again(data: st.DataObject, case: Case, r: int) -> None:
    r = min(r, len(case.hosts))
    hosts, domains = case.inputs()
    plan = plan_failover(hosts, domains, host_failures=r, allow_spread=case.spread)
    state: FailoverState = plan.state
    for _ in range(data.draw(st.integers(1, 3))):
        case, (hc, dc) = data.draw(change(case))
        got = check_change(state, hosts=hc, domains=dc)
        live = _live(case)
        fresh_h, fresh_d = live.inputs()
        want = plan_failover(
            fresh_h, fresh_d, host_failures=r, allow_spread=case.spread, find_max=False
        )
        truth = oracle.level(live.hosts, live.domains, r, case.spread)
        assert got.exact and want.exact
        assert got.tolerated == want.tolerated == truth.tolerated
        assert len(got.stranded) == truth.worst_unplaced
        if got.stranded:
            assert truth.per_scenario[got.failed_hosts] == len(got.stranded)
        state = got.state


def test_a_bound_decided_level_is_rechecked_by_the_bounds() -> None:
    from tests.engine.test_failover import domains, guest, hosts

    hs = hosts([[4096]] * 40, shapes=(np.array([[10]]),))
    ds = domains(*[(h, guest([1024])) for h in range(40)])
    plan = plan_failover(hs, ds, host_failures=32, max_scenarios=100)
    assert plan.tolerated and plan.method == "slots"
    ok = check_change(plan.state, hosts=(HostChange(host=5, free_mib=np.array([4096])),))
    assert ok.tolerated and not ok.exact
    full = check_change(plan.state, hosts=(HostChange(host=5, free_mib=np.array([3072])),))
    assert not full.tolerated
    more = check_change(
        plan.state, domains=(DomainChange(domain=None, host=7, guest=guest([1024])),)
    )
    assert not more.tolerated and more.failed_hosts  # the totals condition names a scenario


def test_a_first_protected_domain_brings_its_hosts_scenarios() -> None:
    """r = 2: hosts 0 and 1 held no protected domain, so the level had no scenario {0, 1};
    the domain created on 1 strands when 0 and 1 fail together (2 is full, 3 may not receive)."""
    from tests.engine.test_failover import domains, guest, hosts

    hs = hosts(
        [[4096], [4096], [0], [4096]],
        eligible=[True, True, True, False],
        shapes=(np.array([[10]]),),
    )
    plan = plan_failover(hs, domains((3, guest([1024]))), host_failures=2)
    assert plan.tolerated and plan.exact
    got = check_change(
        plan.state, domains=(DomainChange(domain=None, host=1, guest=guest([1024])),)
    )
    assert not got.tolerated and got.exact
    assert got.failed_hosts == (0, 1)
    assert [u.domain for u in got.stranded] == [1]
