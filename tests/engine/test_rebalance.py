"""plan_rebalance (AutoNUMA): a worked example and properties replayed move by move."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.engine.rebalance import plan_rebalance
from service.engine.topology import PAGES_PER_MIB
from tests.engine.gen import slit


def test_vnode_0_on_far_pnode_comes_home_in_one_move() -> None:
    d2 = np.array([[10, 20], [20, 10]])
    x = np.array([[[0, 512], [0, 512]]])  # vnode 0's memory sits on pnode 1, far from its vCPUs
    plan = plan_rebalance(
        backing_mib=x,
        size_mib=[[1024, 1024]],
        vdist=d2[None],
        vcpu_count=[[1, 1]],
        home=[[0, 1]],
        block_mib=[128],
        pdist=d2,
        free_mib=[1024, 0],
        budget_mib=4096,
    )
    assert len(plan.moves) == 1
    m = plan.moves[0]
    assert (m.domain, m.from_vnode, m.from_pnode, m.to_vnode, m.to_pnode, m.mib) == (
        0,
        0,
        1,
        0,
        0,
        512,
    )
    # Top 4 plugged 128 MiB blocks of vnode 0 (PFN 0..131072), ballooned down and up on pnode 0.
    step = 128 * PAGES_PER_MIB
    assert m.pfn_ranges == tuple((k * step, (k + 1) * step) for k in range(4))
    assert m.to_pfn_ranges == m.pfn_ranges
    assert plan.distortion_after == 0.0 < plan.distortion_before
    assert plan.remote_fraction_after == 0.0 and plan.remote_fraction_before == 0.5
    assert plan.backing_after_mib.tolist() == [[[512, 0], [0, 512]]]


def test_budget_limits_the_move_to_whole_blocks() -> None:
    d2 = np.array([[10, 20], [20, 10]])
    plan = plan_rebalance(
        backing_mib=[[[0, 512], [0, 512]]],
        size_mib=[[1024, 1024]],
        vdist=d2[None],
        vcpu_count=[[1, 1]],
        home=[[0, 1]],
        block_mib=[128],
        pdist=d2,
        free_mib=[1024, 0],
        budget_mib=300,
    )
    assert plan.moved_mib == 256
    assert plan.distortion_before > plan.distortion_after > 0


def test_no_room_means_no_move() -> None:
    d2 = np.array([[10, 20], [20, 10]])
    plan = plan_rebalance(
        backing_mib=[[[0, 512], [0, 512]]],
        size_mib=[[512, 512]],
        vdist=d2[None],
        vcpu_count=[[1, 1]],
        home=[[0, 1]],
        block_mib=[128],
        pdist=d2,
        free_mib=[64, 0],
        budget_mib=4096,
    )
    assert plan.moves == () and plan.distortion_after == plan.distortion_before


def _host(seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    d, v, p = (int(rng.integers(1, n)) for n in (7, 7, 9))
    block = (2 ** rng.integers(4, 8, size=d)).astype(np.int64)
    nv = rng.integers(1, v + 1, size=d)
    live = np.arange(v)[None, :] < nv[:, None]
    size = np.where(live, rng.integers(1, 9, size=(d, v)) * block[:, None], 0)
    t = (rng.random((d, v)) * (size + 1)).astype(np.int64)
    x = np.zeros((d, v, p), dtype=np.int64)
    cut = rng.random((d, v, p)) * rng.integers(0, 2, size=(d, v, p))
    share = cut / np.maximum(cut.sum(axis=2, keepdims=True), 1e-9)
    x = np.floor(share * t[:, :, None]).astype(np.int64)
    vd = np.stack([slit(rng, v) for _ in range(d)])
    return dict(
        backing_mib=x,
        size_mib=size,
        vdist=vd,
        vcpu_count=np.where(live, rng.integers(0, 5, size=(d, v)), 0),
        home=rng.integers(0, p, size=(d, v)),
        block_mib=block,
        pdist=slit(rng, p),
        free_mib=rng.integers(-200, 3000, size=p),
        budget_mib=int(rng.integers(0, 20000)),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_moves_replay_within_capacity_size_budget_and_blocks(seed: int) -> None:
    kw = _host(seed)
    plan = plan_rebalance(**kw)
    x = kw["backing_mib"].copy()
    free = kw["free_mib"].copy()
    size, block = kw["size_mib"], kw["block_mib"]
    assert plan.distortion_after <= plan.distortion_before
    assert plan.moved_mib == sum(m.mib for m in plan.moves) <= kw["budget_mib"]
    for m in plan.moves:  # replay: free on from_pnode first, then use to_pnode
        b = int(block[m.domain])
        assert m.mib > 0 and m.mib % b == 0
        assert (m.from_vnode, m.from_pnode) != (m.to_vnode, m.to_pnode)
        assert x[m.domain, m.from_vnode, m.from_pnode] >= m.mib
        x[m.domain, m.from_vnode, m.from_pnode] -= m.mib
        free[m.from_pnode] += m.mib
        x[m.domain, m.to_vnode, m.to_pnode] += m.mib
        free[m.to_pnode] -= m.mib
        if m.from_pnode != m.to_pnode:
            assert free[m.to_pnode] >= 0
        assert (x[m.domain].sum(axis=1) <= size[m.domain]).all()
        assert len(m.pfn_ranges) == len(m.to_pfn_ranges) == m.mib // b
        for lo, hi in (*m.pfn_ranges, *m.to_pfn_ranges):
            assert hi - lo == b * PAGES_PER_MIB and lo % (b * PAGES_PER_MIB) == 0
    assert np.array_equal(x, plan.backing_after_mib)
    assert (x >= 0).all()
    assert np.array_equal(x.sum(axis=(1, 2)), kw["backing_mib"].sum(axis=(1, 2)))
    # No pnode ends further over capacity than it started.
    assert (free >= np.minimum(kw["free_mib"], 0)).all()


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_unlimited_budget_reaches_a_local_optimum(seed: int) -> None:
    kw = _host(seed)
    kw["budget_mib"] = 10**7
    plan = plan_rebalance(**kw)
    again = plan_rebalance(
        **{
            **kw,
            "backing_mib": plan.backing_after_mib,
            "free_mib": kw["free_mib"]
            + kw["backing_mib"].sum(axis=(0, 1))
            - plan.backing_after_mib.sum(axis=(0, 1)),
        }
    )
    assert again.moves == ()
