"""plan_migration: the seed thread's re-pooling, shrink-before-migrate, and replayed properties."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from service.engine import distribute
from service.engine.migration import PHASES, MigrationPlan, plan_migration
from service.engine.replay import replay
from tests.engine.gen import slit

I64 = NDArray[np.int64]


def _snc_slit(sockets: int = 4, per_socket: int = 4) -> I64:
    """4 sockets x 4 SNC nodes: 10 local, 12 same socket, 32 other socket."""
    n = sockets * per_socket
    sock = np.arange(n) // per_socket
    d = np.where(sock[:, None] == sock[None, :], 12, 32)
    np.fill_diagonal(d, 10)
    return d.astype(np.int64)


def _seed_guest() -> dict[str, Any]:
    """The worst-case 16-vnode guest, 8 GiB of 16 GiB on a 1-node host (faithful there)."""
    vdist = _snc_slit()
    size = np.full(16, 1024, dtype=np.int64)
    cw = np.ones(16, dtype=np.int64)
    cw[0] = 17
    xs = distribute(
        target_mib=8 * 1024,
        size_mib=size,
        headroom_mib=np.array([64 * 1024]),
        home=np.zeros(16, dtype=np.int64),
        vdist=vdist,
        pdist=np.array([[10]]),
        policy="faithful",
        vcpu_count=cw,
    )
    return dict(
        size_mib=size,
        vcpu_count=cw,
        vdist=vdist,
        block_mib=128,
        dynamic_max_mib=16 * 1024,
        backing_src=xs,
        home_src=np.zeros(16, dtype=np.int64),
        pdist_src=np.array([[10]]),
    )


def _to_16_node(free: I64, **kw: Any) -> MigrationPlan:
    return plan_migration(
        **_seed_guest(),
        free_dst_mib=free,
        cpus_dst=np.full(16, 4),
        pdist_dst=_snc_slit(),
        load_vcpus_dst=np.zeros(16, dtype=np.int64),
        **kw,
    )


def _replay_16(plan: MigrationPlan, dmin: int, free: I64) -> None:
    replay(
        plan,
        size_mib=np.full(16, 1024),
        dynamic_min_mib=dmin,
        capacity_src_mib=[65536],
        used_src_other_mib=[0],
        capacity_dst_mib=free + 100,
        used_dst_other_mib=np.full(16, 100),
    )


def test_seed_16_vnodes_1_node_to_16_node_host_refills_pools_to_match_distances() -> None:
    free = np.full(16, 4096, dtype=np.int64)
    plans = {}
    for strategy in ("rebalance", "replug"):
        plan = _to_16_node(free, dynamic_min_mib=2048, strategy=strategy)
        assert plan.feasible, plan.reason
        _replay_16(plan, 2048, free)
        # On the 1-node host every vnode believes in 12/32 distances but all memory is at 10.
        assert plan.distortion_before > 10
        # On the 16-node host every MiB sits exactly as far as the guest believes.
        assert plan.distortion_after == 0.0
        assert plan.target_after_mib == plan.target_before_mib == 8192
        # Every pool is backed on the pnode its vnode is homed on (one pnode per vnode).
        xa = plan.backing_after
        assert (xa.sum(axis=1) == xa[np.arange(16), plan.mapping_after]).all()
        assert len(set(plan.mapping_after.tolist())) == 16
        plans[strategy] = plan
    assert plans["replug"].moved_mib > plans["rebalance"].moved_mib
    reb = plans["rebalance"]
    # rebalance moves exactly the pool changes.
    dt = reb.backing_after.sum(axis=1) - reb.backing_before.sum(axis=1)
    assert reb.moved_mib == int(np.abs(dt).sum())


def test_seed_16_vnodes_to_host_with_home_socket_full_keeps_distances_faithful() -> None:
    """The thread's case: the guest's vCPUs end on a socket without free memory."""
    free = np.full(16, 2048, dtype=np.int64)
    free[:4] = 0
    plan = _to_16_node(free, dynamic_min_mib=4096, strategy="rebalance")
    assert plan.feasible, plan.reason
    _replay_16(plan, 4096, free)
    assert plan.claims_mib[:4].sum() == 0
    assert plan.distortion_after < plan.distortion_before


def test_shrink_before_migrate_when_destination_is_small_6144_of_8192() -> None:
    free = np.full(16, 384, dtype=np.int64)  # 6 GiB in all
    plan = _to_16_node(free, dynamic_min_mib=4096)
    assert plan.feasible, plan.reason
    assert plan.target_after_mib == 6144 < plan.target_before_mib == 8192
    assert int(plan.backing_after.sum()) == 6144
    assert (plan.claims_mib <= free).all()
    _replay_16(plan, 4096, free)


def test_destination_below_dynamic_min_is_infeasible_with_both_numbers() -> None:
    free = np.full(16, 384, dtype=np.int64)  # 6144 MiB
    plan = _to_16_node(free, dynamic_min_mib=7168)
    assert not plan.feasible
    assert "6144" in plan.reason and "7168" in plan.reason
    assert plan.steps == ()


def test_replug_keeps_boot_minimum_in_largest_destination_pools() -> None:
    free = np.full(16, 4096, dtype=np.int64)
    plan = _to_16_node(free, dynamic_min_mib=2048, strategy="replug", boot_mib=3072)
    assert plan.feasible
    assert int(plan.carried_mib.sum()) == 3072
    migrate = [s for s in plan.steps if s.op == "migrate"]
    assert len(migrate) == 1 and migrate[0].target_mib == 3072
    assert (plan.carried_mib <= plan.backing_after.sum(axis=1)).all()
    _replay_16(plan, 2048, free)


def test_prepare_never_below_dynamic_min_when_pools_do_not_overlap() -> None:
    """Pool 0 is full on the source, the destination wants pool 1 full: a transient surplus."""
    size = np.array([2048, 2048])
    free = np.array([0, 2560])  # 512 MiB spare beyond the final 2048 on pnode 1
    kw: dict[str, Any] = dict(
        size_mib=size,
        vcpu_count=[1, 3],
        vdist=[[10, 40], [40, 10]],
        block_mib=128,
        dynamic_max_mib=4096,
        backing_src=[[2048], [0]],
        home_src=[0, 0],
        pdist_src=[[10]],
        free_dst_mib=free,
        cpus_dst=[4, 4],
        pdist_dst=[[10, 40], [40, 10]],
        load_vcpus_dst=[0, 0],
        policy="nearest",
    )
    plan = plan_migration(dynamic_min_mib=1024, **kw)
    assert plan.feasible, plan.reason
    assert plan.backing_after.sum(axis=1).tolist() == [0, 2048]
    assert plan.carried_mib.tolist() == [1024, 0]  # pool 0 carried above its final level 0
    assert plan.claims_mib.tolist() == [0, 2560]  # final 2048 + 512 of surplus in spare room
    tr = replay(
        plan,
        size_mib=size,
        dynamic_min_mib=1024,
        capacity_src_mib=[2048],
        used_src_other_mib=[0],
        capacity_dst_mib=free,
        used_dst_other_mib=[0, 0],
    )
    assert tr.min_total_mib == 1024
    # Keeping 2048 MiB through the move would need room the destination does not have.
    plan = plan_migration(dynamic_min_mib=2048, **kw)
    assert not plan.feasible and "dynamic_min 2048" in plan.reason


def _random_case(seed: int, tight: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    rng = np.random.default_rng(seed)
    v, ps, pd = (int(rng.integers(1, 17)) for _ in range(3))
    block = int(2 ** rng.integers(1, 8))
    size = rng.integers(1, 12, size=v).astype(np.int64) * block
    home_src = rng.integers(0, ps, size=v).astype(np.int64)
    t = (rng.random(v) * (size + 1)).astype(np.int64)
    xs = np.zeros((v, ps), dtype=np.int64)
    xs[np.arange(v), home_src] = t
    if ps > 1:
        other = rng.integers(0, ps, size=v)
        half = t // 3
        xs[np.arange(v), home_src] -= half
        xs[np.arange(v), other] += half
    total = int(t.sum())
    dmin = int(rng.integers(0, total + 1))
    if tight:
        free = rng.multinomial(int(rng.integers(0, total + block)), np.full(pd, 1 / pd))
    else:
        free = rng.integers(0, total + 1, size=pd)
    other_d = rng.integers(0, 500, size=pd)
    other_s = rng.integers(0, 500, size=ps)
    policy = str(rng.choice(["faithful", "proportional", "nearest", "round-robin"]))
    strategy: Literal["rebalance", "replug"] = "replug" if rng.random() < 0.5 else "rebalance"
    boot = None if rng.random() < 0.5 else int(rng.integers(0, total + 1))
    kw = dict(
        size_mib=size,
        vcpu_count=rng.integers(0, 5, size=v),
        vdist=slit(rng, v),
        block_mib=block,
        dynamic_min_mib=dmin,
        dynamic_max_mib=int(size.sum()),
        backing_src=xs,
        home_src=home_src,
        pdist_src=slit(rng, ps),
        free_dst_mib=free.astype(np.int64),
        cpus_dst=rng.integers(1, 9, size=pd),
        pdist_dst=slit(rng, pd),
        load_vcpus_dst=rng.integers(0, 9, size=pd),
        policy=policy,
        strategy=strategy,
        boot_mib=boot,
    )
    env = dict(
        size_mib=size,
        dynamic_min_mib=dmin,
        capacity_src_mib=xs.sum(axis=0) + other_s + rng.integers(0, 3, size=ps),
        used_src_other_mib=other_s,
        capacity_dst_mib=free + other_d,
        used_dst_other_mib=other_d,
    )
    return kw, env


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), tight=st.booleans())
def test_every_feasible_plan_replays_cleanly(seed: int, tight: bool) -> None:
    kw, env = _random_case(seed, tight)
    plan = plan_migration(**kw)
    size = kw["size_mib"]
    if not plan.feasible:
        assert plan.reason and plan.steps == ()
        return
    trace = replay(plan, **env)
    xa = plan.backing_after
    assert (xa >= 0).all() and (xa.sum(axis=1) <= size).all()
    assert int(xa.sum()) == plan.target_after_mib
    assert kw["dynamic_min_mib"] <= plan.target_after_mib <= plan.target_before_mib
    assert plan.target_after_mib == min(
        plan.target_before_mib, int(np.maximum(kw["free_dst_mib"], 0).sum()), int(size.sum())
    )
    assert (plan.claims_mib >= trace.peak_dst_mib).all()
    assert (plan.claims_mib >= xa.sum(axis=0)).all()
    assert (plan.claims_mib <= np.maximum(kw["free_dst_mib"], 0)).all()
    assert [s.seq for s in plan.steps] == list(range(len(plan.steps)))
    idx = [PHASES.index(s.phase) for s in plan.steps]
    assert idx == sorted(idx)
    assert sum(s.op == "migrate" for s in plan.steps) == 1
    assert all(s.mib >= 0 for s in plan.steps)
    assert plan.moved_mib >= int(np.abs(xa.sum(axis=1) - plan.backing_before.sum(axis=1)).sum())
    claim_steps = {s.pnode: s.mib for s in plan.steps if s.op == "claim"}
    assert claim_steps == {p: int(c) for p, c in enumerate(plan.claims_mib) if c > 0}
    released = sum(s.mib for s in plan.steps if s.op == "release")
    assert released == int(plan.carried_mib.sum())
