"""The replayer is the oracle: it must reject broken plans, not only accept good ones."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from service.engine.migration import MigrationPlan, PlanStep, plan_migration
from service.engine.replay import ReplayError, replay

SIZE = np.array([1024, 1024, 1024, 1024])
VDIST = np.array([[10, 20, 30, 30], [20, 10, 30, 30], [30, 30, 10, 20], [30, 30, 20, 10]])
XS = np.array([[1024, 0], [896, 0], [0, 300], [0, 200]])  # on a 2-node source
FREE_DST = np.array([1024, 1024, 1024, 1024])
ENV: dict[str, Any] = dict(
    size_mib=SIZE,
    dynamic_min_mib=1024,
    capacity_src_mib=[4000, 4000],
    used_src_other_mib=[1000, 1000],
    capacity_dst_mib=FREE_DST + 50,
    used_dst_other_mib=[50, 50, 50, 50],
)


def _plan(strategy: str = "rebalance") -> MigrationPlan:
    return plan_migration(
        size_mib=SIZE,
        vcpu_count=[2, 1, 1, 1],
        vdist=VDIST,
        block_mib=128,
        dynamic_min_mib=1024,
        dynamic_max_mib=4096,
        backing_src=XS,
        home_src=[0, 0, 1, 1],
        pdist_src=[[10, 30], [30, 10]],
        free_dst_mib=FREE_DST,
        cpus_dst=[4, 4, 4, 4],
        pdist_dst=[[10, 20, 30, 30], [20, 10, 30, 30], [30, 30, 10, 20], [30, 30, 20, 10]],
        load_vcpus_dst=[0, 0, 0, 0],
        policy="proportional",
        strategy=strategy,  # type: ignore[arg-type]
    )


def _with_steps(plan: MigrationPlan, steps: list[PlanStep]) -> MigrationPlan:
    steps = [dataclasses.replace(s, seq=i) for i, s in enumerate(steps)]
    return dataclasses.replace(plan, steps=tuple(steps))


@pytest.mark.parametrize("strategy", ["rebalance", "replug"])
def test_good_plan_replays(strategy: str) -> None:
    plan = _plan(strategy)
    assert plan.feasible
    tr = replay(plan, **ENV)
    assert tr.min_total_mib >= 1024
    assert np.array_equal(tr.final_backing_mib, plan.backing_after)
    assert any(s.op == "unplug" for s in plan.steps)
    assert any(s.op == "plug" for s in plan.steps)


def test_dropped_release_is_caught() -> None:
    plan = _plan()
    steps = [s for s in plan.steps if s.op != "release"][:]
    rel = [s for s in plan.steps if s.op == "release"]
    with pytest.raises(ReplayError, match="left on the source"):
        replay(_with_steps(plan, steps + rel[:-1]), **ENV)


def test_over_unplug_below_dynamic_min_is_caught() -> None:
    plan = _plan("replug")
    steps = list(plan.steps)
    i = next(k for k, s in enumerate(steps) if s.op == "unplug")
    s = steps[i]
    assert s.vnode is not None
    # Unplug the whole vnode instead: too much out of that pnode or below dynamic_min.
    level_before = s.target_mib + s.mib if s.target_mib is not None else 0
    steps[i] = dataclasses.replace(s, mib=level_before, target_mib=0)
    with pytest.raises(ReplayError):
        replay(_with_steps(plan, steps), **ENV)


def test_dynamic_min_guard_is_checked() -> None:
    plan = _plan("replug")
    with pytest.raises(ReplayError, match="below dynamic_min"):
        replay(plan, **{**ENV, "dynamic_min_mib": plan.target_before_mib})


def test_wrong_pfn_range_is_caught() -> None:
    plan = _plan()
    steps = list(plan.steps)
    i = next(k for k, s in enumerate(steps) if s.op == "plug")
    lo, hi = steps[i].pfn_ranges[0]
    steps[i] = dataclasses.replace(
        steps[i], pfn_ranges=((lo + 1, hi + 1), *steps[i].pfn_ranges[1:])
    )
    with pytest.raises(ReplayError, match="block-aligned"):
        replay(_with_steps(plan, steps), **ENV)
    steps[i] = dataclasses.replace(steps[i], pfn_ranges=steps[i].pfn_ranges[1:])
    with pytest.raises(ReplayError, match="PFN ranges"):
        replay(_with_steps(plan, steps), **ENV)


def test_range_outside_span_is_caught() -> None:
    plan = _plan()
    steps = list(plan.steps)
    i = next(k for k, s in enumerate(steps) if s.op == "unplug")
    steps[i] = dataclasses.replace(steps[i], pfn_ranges=((0, 10**9),))
    with pytest.raises(ReplayError, match="outside"):
        replay(_with_steps(plan, steps), **ENV)


def test_missing_or_short_claim_is_caught() -> None:
    plan = _plan()
    steps = [s for s in plan.steps if s.op != "claim"]
    with pytest.raises(ReplayError, match="claim"):
        replay(_with_steps(plan, steps), **ENV)


def test_claim_beyond_destination_capacity_is_caught() -> None:
    plan = _plan()
    with pytest.raises(ReplayError, match="claims"):
        replay(plan, **{**ENV, "used_dst_other_mib": [900, 900, 900, 900]})


def test_phase_order_and_seq_are_checked() -> None:
    plan = _plan()
    steps = list(plan.steps)
    bad = [*steps, steps[0]]  # a claim after the release phase
    with pytest.raises(ReplayError, match="out of order"):
        replay(_with_steps(plan, bad), **ENV)
    shuffled = dataclasses.replace(plan, steps=(dataclasses.replace(steps[0], seq=5), *steps[1:]))
    with pytest.raises(ReplayError, match="seq"):
        replay(shuffled, **ENV)


def test_balloon_that_crosses_a_block_is_caught() -> None:
    plan = _plan()
    steps = [
        dataclasses.replace(s, op="balloon", pfn_ranges=()) if s.op == "plug" else s
        for s in plan.steps
    ]
    with pytest.raises(ReplayError, match="balloon"):
        replay(_with_steps(plan, steps), **ENV)


def test_wrong_final_backing_is_caught() -> None:
    plan = _plan()
    xa = plan.backing_after.copy()
    xa[0, :] = np.roll(xa[0, :], 1)
    if np.array_equal(xa, plan.backing_after):
        xa[0, 0] += 1
    with pytest.raises(ReplayError):
        replay(dataclasses.replace(plan, backing_after=xa), **ENV)


def test_source_over_capacity_is_caught() -> None:
    plan = _plan()
    with pytest.raises(ReplayError, match="source pnode"):
        replay(plan, **{**ENV, "used_src_other_mib": [3500, 0]})


def test_infeasible_plan_cannot_be_replayed() -> None:
    plan = dataclasses.replace(_plan(), feasible=False, reason="x")
    with pytest.raises(ReplayError, match="infeasible"):
        replay(plan, **ENV)
