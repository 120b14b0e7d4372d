"""A settled batch report is answered without the full path: it must be one the full path would
not have changed anything for (no database).

`settled` reads plain rows (`ReportView`); the full path reads the same host as ORM rows and runs
`observe`, `stalled` and `drift`. For hosts drawn at random (targets met or not, first reports,
flagged drivers, stale and fresh progress, pending pool steps, claims) and reports drawn at
random (the sizes held, others, invalid indexes, sizes above a vnode's span), whenever `settled`
says yes, the report must be valid and the full path's change sets empty apart from stamping the
observation.
"""

from __future__ import annotations

import random
from datetime import timedelta

import numpy as np

from service.core.agent_report import drift, settled, validate_report
from service.core.balloon import observe, stalled
from service.db.accounting import HostAccounting
from service.db.report_view import DomainView, ReportView
from service.schemas.agent import AgentReportIn
from tests.core.sim import SETTINGS, T0, make_domain, make_host


def _view(state: HostAccounting, pending: set[str]) -> ReportView:
    """What `load_report_view` reads for this host: the stored counters and the vnode rows."""
    free = state.capacity_mib - state.claimed_mib - state.allocated_mib()
    return ReportView(
        drift_flagged=state.host.drift_flagged,
        accounted_free_mib=free.tolist(),
        claimed_mib=state.claimed_mib.tolist(),
        observed_free_mib=[p.observed_free_mib for p in state.host.pnodes],
        domains={
            d.id: DomainView(
                target_mib=d.target_mib,
                uncooperative=d.uncooperative,
                last_progress_at=d.last_progress_at,
                target_set_at=d.target_set_at,
                pending_pool_steps=d.id in pending,
                vnode_target_mib=[v.target_mib for v in d.vnodes],
                size_mib=[v.size_mib for v in d.vnodes],
                actual_mib=[v.actual_mib for v in d.vnodes],
            )
            for d in state.domains
        },
    )


def _host(rng: random.Random) -> tuple[HostAccounting, set[str]]:
    host = make_host([16384, 16384])
    domains = []
    for n in range(rng.randint(1, 4)):
        sizes = [rng.choice([1024, 2048]) for _ in range(rng.randint(1, 3))]
        domain, backing = make_domain(f"vm{n}", host, sizes, [v % 2 for v in range(len(sizes))])
        for vn in domain.vnodes:
            vn.target_mib = rng.choice([vn.size_mib, vn.size_mib // 2])
            vn.actual_mib = rng.choice([vn.target_mib, vn.target_mib, vn.size_mib, None])
        domain.target_mib = sum(v.target_mib for v in domain.vnodes)
        domain.uncooperative = rng.random() < 0.2
        domain.last_progress_at = rng.choice([None, T0 + timedelta(seconds=rng.randint(0, 30))])
        domains.append((domain, backing))
    claimed = np.array([rng.choice([0, 0, 0, 512]), 0], dtype=np.int64)
    state = HostAccounting(
        host=host,
        domains=[d for d, _ in domains],
        backing={d.id: b for d, b in domains},
        claimed_mib=claimed,
    )
    pending = {d.id for d, _ in domains if rng.random() < 0.15}
    return state, pending


def _report(rng: random.Random, state: HostAccounting) -> AgentReportIn:
    domains = []
    for d in state.domains:
        if rng.random() < 0.1:
            continue
        vnodes = []
        for vn in d.vnodes:
            held = vn.actual_mib if vn.actual_mib is not None else vn.target_mib
            value = (
                held if rng.random() < 0.8 else rng.choice([held - 128, held + 128, vn.size_mib])
            )
            if rng.random() < 0.03:
                value = vn.size_mib + 1  # above the span: nonsense, refused

            vnodes.append({"index": vn.index, "actual_mib": max(value, 0)})
        if rng.random() < 0.05:
            vnodes.append({"index": len(d.vnodes), "actual_mib": 1})
        domains.append({"domain_id": d.id, "vnodes": vnodes})
    return AgentReportIn.model_validate({"domains": domains})


def test_a_settled_report_is_one_the_full_path_would_not_change() -> None:
    rng = random.Random(20261202)
    yes = no = 0
    for _ in range(3000):
        state, pending = _host(rng)
        body = _report(rng, state)
        now = T0 + timedelta(seconds=rng.choice([1, 10, 25, 60]))
        if not settled(_view(state, pending), body, now, SETTINGS):
            no += 1
            continue
        yes += 1
        validate_report(state, body)  # a settled report is a valid one
        for d in body.domains:
            domain = state.domain(d.domain_id)
            assert domain is not None and domain.id not in pending
            changes, progress = observe(
                domain, {v.index: v.actual_mib for v in d.vnodes}, now, actor="a", action="r"
            )
            assert not changes and not changes.status and not progress
        assert not stalled(state.domains, now, SETTINGS, actor="a")
        assert not state.claimed_mib.any()
        flagged, _, changes = drift(state, {}, now, SETTINGS, "a")
        assert not changes.events and flagged == state.host.drift_flagged
    assert yes > 300 and no > 300  # both branches were exercised


def test_the_steady_report_of_converged_guests_is_settled() -> None:
    state, _ = _host(random.Random(7))
    for d in state.domains:
        d.uncooperative = False
        for vn in d.vnodes:
            vn.actual_mib = vn.target_mib
    state.claimed_mib[:] = 0
    body = AgentReportIn.model_validate(
        {
            "domains": [
                {
                    "domain_id": d.id,
                    "vnodes": [{"index": v.index, "actual_mib": v.actual_mib} for v in d.vnodes],
                }
                for d in state.domains
            ]
        }
    )
    later = T0 + timedelta(hours=1)
    assert settled(_view(state, set()), body, later, SETTINGS)
    # ... and is not once a pool step waits on one of its domains, or a claim could lapse.
    assert not settled(_view(state, {state.domains[0].id}), body, later, SETTINGS)
    state.claimed_mib[0] = 512
    assert not settled(_view(state, set()), body, later, SETTINGS)
