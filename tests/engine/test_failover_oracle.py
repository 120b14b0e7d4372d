"""The failover planner against the brute-force oracle on clusters small enough to enumerate:
every answer (tolerated, max_host_failures, the worst scenario's stranded domains) must agree
where the plan says it is exact, and the bound path must never claim tolerated wrongly."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.engine.failover import FailoverPlan, plan_failover
from tests.engine import failover_oracle as oracle
from tests.engine.failover_cases import Case, clusters

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _restarts(plan_restarts: object, rows: range) -> list[tuple[int, int, tuple[int, ...]]]:
    r = plan_restarts
    return [
        (int(r.domain[i]), int(r.host[i]), tuple(p for _, p in r.vnodes(i)))  # type: ignore[attr-defined]
        for i in rows
    ]


def check_worst(case: Case, plan: FailoverPlan, want: oracle.OracleLevel) -> None:
    if plan.worst is None:
        assert want.worst_unplaced == 0
        return
    w = plan.worst
    assert len(w.unplaced) == want.worst_unplaced
    assert want.per_scenario[w.failed_hosts] == len(w.unplaced)
    rows = _restarts(w.restarts, range(len(w.restarts)))
    oracle.restart_fits(case.hosts, case.domains, w.failed_hosts, rows, case.spread)
    for (d, h, m), got in zip(rows, w.restarts.distortion.tolist(), strict=True):
        want_d = oracle.distortion(case.domains[d], case.hosts[h].pdist, m)
        assert got == pytest.approx(want_d, abs=1e-9)
    failed_doms = {i for i, d in enumerate(case.domains) if d.host in w.failed_hosts}
    assert {d for d, _, _ in rows} | {u.domain for u in w.unplaced} == failed_doms
    assert all(u.reason for u in w.unplaced)


def check_single_failures(case: Case, plan: FailoverPlan) -> None:
    """Where each host's domains restart when it fails alone: valid, host by host."""
    rs = plan.restarts
    for g in {int(x) for x in rs.failed_host}:
        rows = [i for i in range(len(rs)) if int(rs.failed_host[i]) == g]
        oracle.restart_fits(case.hosts, case.domains, (g,), _restarts(rs, rows), case.spread)


@SETTINGS
@given(clusters(), st.integers(1, 2))
def test_exact_plan_agrees_with_brute_force(case: Case, r: int) -> None:
    r = min(r, len(case.hosts))
    hosts, domains = case.inputs()
    plan = plan_failover(hosts, domains, host_failures=r, allow_spread=case.spread)
    want = oracle.level(case.hosts, case.domains, r, case.spread)
    assert plan.exact and plan.method == "exhaustive"
    assert plan.tolerated == want.tolerated
    assert plan.max_host_failures == oracle.max_host_failures(case.hosts, case.domains, case.spread)
    assert plan.max_host_failures_exact
    check_worst(case, plan, want)
    check_single_failures(case, plan)


@SETTINGS
@given(clusters(), st.integers(1, 3))
def test_bound_is_never_optimistic(case: Case, r: int) -> None:
    """Forced onto the bounds (no scenario enumerated): tolerated only when truly tolerated,
    max_host_failures never above the truth, and equal to it when it says it is exact."""
    r = min(r, len(case.hosts))
    hosts, domains = case.inputs()
    plan = plan_failover(hosts, domains, host_failures=r, allow_spread=case.spread, max_scenarios=0)
    assert not plan.exact or not case.domains  # nothing to restart is exact by itself
    want = oracle.level(case.hosts, case.domains, r, case.spread)
    if plan.tolerated:
        assert want.tolerated
        exact = plan_failover(hosts, domains, host_failures=r, allow_spread=case.spread)
        assert exact.exact and exact.tolerated
    if plan.method == "totals":
        assert not want.tolerated
    true_max = oracle.max_host_failures(case.hosts, case.domains, case.spread)
    assert plan.max_host_failures <= true_max
    if plan.max_host_failures_exact:
        assert plan.max_host_failures == true_max


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters())
def test_oracle_tolerance_is_monotone(case: Case) -> None:
    """The property max_host_failures' search relies on, checked on the oracle itself."""
    ok = [
        oracle.level(case.hosts, case.domains, r, case.spread).tolerated
        for r in range(len(case.hosts) + 1)
    ]
    assert ok == sorted(ok, reverse=True)
