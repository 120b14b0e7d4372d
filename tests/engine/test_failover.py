"""Hand-made failover cases: each shows one rule of issue 26's planner and its wording."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine.errors import InputError
from service.engine.failover import (
    FailoverHosts,
    GuestShape,
    ProtectedDomains,
    plan_failover,
    protected_domains,
)

GIB = 1024
SLIT2 = np.array([[10, 21], [21, 10]])
NEAR2 = np.array([[10, 12], [12, 10]])


def hosts(
    free: list[list[int]],
    *,
    squeezable: list[list[int]] | None = None,
    eligible: list[bool] | None = None,
    shape: list[int] | None = None,
    shapes: tuple[np.ndarray, ...] = (SLIT2,),
) -> FailoverHosts:
    n = len(free)
    return FailoverHosts(
        free_mib=np.array(free, dtype=np.int64),
        squeezable_mib=np.zeros((n, len(free[0])), np.int64)
        if squeezable is None
        else np.array(squeezable, dtype=np.int64),
        eligible=np.ones(n, bool) if eligible is None else np.array(eligible),
        shape=np.zeros(n, np.int64) if shape is None else np.array(shape),
        shapes=shapes,
    )


def guest(
    mib: list[int], limit: float | None = None, vdist: np.ndarray | None = None
) -> GuestShape:
    v = len(mib)
    vd = np.full((v, v), 21) if vdist is None else vdist
    np.fill_diagonal(vd, 10)
    return GuestShape(
        restart_mib=np.array(mib), vcpu_count=np.ones(v, np.int64), vdist=vd, max_distortion=limit
    )


def domains(*pairs: tuple[int, GuestShape]) -> ProtectedDomains:
    return protected_domains(host=[h for h, _ in pairs], guests=[g for _, g in pairs])


def test_a_vnode_no_pnode_can_hold_strands_its_domain_though_memory_suffices() -> None:
    hs = hosts([[32 * GIB, 32 * GIB]] * 3)
    ds = domains((0, guest([48 * GIB, GIB])))
    plan = plan_failover(hs, ds)
    assert not plan.tolerated and plan.exact
    assert plan.max_host_failures == 0 and plan.max_host_failures_exact
    assert plan.worst is not None and plan.worst.failed_hosts == (0,)
    (u,) = plan.worst.unplaced
    assert u.domain == 0
    assert u.reason == (
        "vnode 0 needs 49152 MiB on one pnode; the largest pnode an eligible survivor can free "
        "has 32768 MiB"
    )
    # Spreading the vnode over the pnodes of one host is what allow_spread permits.
    spread = plan_failover(hs, ds, allow_spread=True)
    assert spread.tolerated and spread.exact
    assert spread.max_host_failures == 2
    # Without the search, only what this level proves: r when tolerated, else none.
    quick = plan_failover(hs, ds, allow_spread=True, find_max=False)
    assert (quick.max_host_failures, quick.max_host_failures_exact) == (1, False)
    quick = plan_failover(hs, ds, host_failures=2, find_max=False)
    assert (quick.max_host_failures, quick.max_host_failures_exact) == (0, False)


def test_squeezing_the_survivors_makes_room_and_is_reported() -> None:
    free = [[0, 0], [GIB, GIB], [8 * GIB, 8 * GIB]]
    sq = [[0, 0], [3 * GIB, 0], [0, 0]]
    ds = domains((0, guest([4 * GIB])))
    plan = plan_failover(hosts(free, squeezable=sq, eligible=[True, True, False]), ds)
    assert plan.tolerated and plan.exact
    assert plan.worst is not None
    assert plan.worst.squeeze_mib == 3 * GIB
    assert plan.worst.free_after_mib == GIB  # host 1's other pnode; host 2 may not receive
    assert plan.restarts.host.tolist() == [1]
    assert plan.restarts.vnodes(0) == [(0, 0)]
    unsqueezable = plan_failover(hosts(free, eligible=[True, True, False]), ds)
    assert not unsqueezable.tolerated and unsqueezable.exact


def test_a_distortion_limit_no_topology_meets() -> None:
    ds = domains((0, guest([GIB, GIB], limit=0.0)))
    plan = plan_failover(hosts([[8 * GIB, 8 * GIB]] * 2, shapes=(NEAR2,)), ds)
    assert not plan.tolerated and plan.exact
    assert plan.worst is not None
    assert plan.worst.unplaced[0].reason == (
        "no surviving host's topology has a mapping within its distortion limit 0"
    )


def test_a_distortion_limit_that_needs_a_roomier_host() -> None:
    # Split over two pnodes 12 apart the guest's 21 becomes 4.5 of distortion; on one pnode 5.5.
    hs = hosts([[8 * GIB, 8 * GIB], [8 * GIB, 0]], shapes=(NEAR2,))
    within = plan_failover(hs, domains((0, guest([GIB, GIB], limit=5.0))))
    assert not within.tolerated and within.exact
    assert within.worst is not None
    assert within.worst.unplaced[0].reason == (
        "it fits only with a distortion beyond its limit 5: no surviving host has room for a "
        "mapping within it"
    )
    looser = plan_failover(hs, domains((0, guest([GIB, GIB], limit=5.5))))
    assert looser.tolerated and looser.worst is not None
    assert looser.worst.restarts.distortion.tolist() == [5.5]


def test_restarts_of_one_scenario_share_the_survivors() -> None:
    hs = hosts([[0], [4 * GIB]], shapes=(np.array([[10]]),))
    ds = domains((0, guest([3 * GIB])), (0, guest([3 * GIB])))
    plan = plan_failover(hs, ds)
    assert not plan.tolerated and plan.exact
    assert plan.worst is not None
    (u,) = plan.worst.unplaced
    assert u.reason == (
        "1 eligible survivor(s) could take it alone, but the other restarts of this scenario "
        "(3072 MiB) fill them"
    )
    assert len(plan.worst.restarts) == 1


def test_no_eligible_survivor() -> None:
    plan = plan_failover(hosts([[GIB, GIB]] * 2, eligible=[True, False]), domains((0, guest([1]))))
    assert not plan.tolerated and plan.exact
    assert plan.worst is not None
    assert plan.worst.unplaced[0].reason.startswith("no eligible survivor")


def test_a_search_out_of_budget_never_claims_tolerated() -> None:
    # Greedy (largest first, best fit) splits the first domain over both pnodes and strands the
    # second; the complete search finds the plan, unless it has no budget to search with.
    shapes = (SLIT2,)
    hs = hosts([[0, 0], [7 * GIB, 6 * GIB]], shapes=shapes)
    ds = domains((0, guest([4 * GIB, 3 * GIB])), (0, guest([6 * GIB])))
    assert plan_failover(hs, ds).tolerated
    starved = plan_failover(hs, ds, search_nodes=1)
    assert not starved.tolerated and not starved.exact
    assert starved.worst is not None and not starved.worst.proven
    assert starved.worst.unplaced[0].reason.endswith(
        "(search budget exhausted: not proven impossible)"
    )


def test_max_host_failures_by_the_bounds_on_a_larger_cluster() -> None:
    # 40 hosts, 4 GiB free each, one 1 GiB domain each: r failures fit while r <= 4 (40 - r).
    hs = hosts([[4 * GIB]] * 40, shapes=(np.array([[10]]),))
    ds = domains(*[(h, guest([GIB])) for h in range(40)])
    plan = plan_failover(hs, ds, host_failures=3, max_scenarios=100)
    assert plan.tolerated and not plan.exact and plan.method == "slots"
    assert plan.max_host_failures == 32 and plan.max_host_failures_exact
    assert plan.scenarios == 9880
    exact = plan_failover(hs, ds, host_failures=1, max_scenarios=100)
    assert exact.exact and exact.method == "exhaustive" and len(exact.restarts) == 40


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"free_mib": np.array([[-1, 0]])}, "free_mib must not be negative"),
        ({"eligible": np.array([True, True])}, "eligible must be (1,)"),
        ({"shape": np.array([1])}, "shape indices must point into shapes"),
    ],
)
def test_bad_hosts_are_refused_saying_what(change: dict[str, np.ndarray], message: str) -> None:
    base = dict(
        free_mib=np.array([[0, 0]]),
        squeezable_mib=np.array([[0, 0]]),
        eligible=np.array([True]),
        shape=np.array([0]),
        shapes=(SLIT2,),
    )
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_failover(FailoverHosts(**{**base, **change}), domains())  # type: ignore[arg-type]


def test_bad_domains_and_levels_are_refused() -> None:
    hs = hosts([[GIB, GIB]])
    with pytest.raises(InputError, match="host must index"):
        plan_failover(hs, domains((3, guest([1]))))
    with pytest.raises(InputError, match="host_failures must be between 0 and the 1 hosts"):
        plan_failover(hs, domains(), host_failures=2)
    with pytest.raises(InputError, match="like restart_mib"):
        GuestShape(restart_mib=np.array([1, 2]), vcpu_count=np.array([1, 1]), vdist=SLIT2[:1])
    with pytest.raises(InputError, match="max_distortion"):
        guest([1], limit=float("nan"))


def test_reservations_decide_where_one_large_guest_defeats_the_slots() -> None:
    # 36 hosts with 5 GiB free, 4 with 8 GiB; two 1 GiB domains each, and a 6 GiB one on host 0.
    # The slot must hold the 6 GiB guest, so only 4 hosts offer one: the slot bound fails; with
    # two backups per domain the reservations hold, and every scenario agrees.
    free = [[8 * GIB]] * 4 + [[5 * GIB]] * 36
    hs = hosts(free, shapes=(np.array([[10]]),))
    pairs = [(h, guest([GIB])) for h in range(40) for _ in range(2)] + [(0, guest([6 * GIB]))]
    ds = domains(*pairs)
    bound = plan_failover(hs, ds, host_failures=2, max_scenarios=100, find_max=False)
    assert bound.tolerated and bound.method == "reservations" and not bound.exact
    exact = plan_failover(hs, ds, host_failures=2, find_max=False)
    assert exact.tolerated and exact.exact


def test_a_spread_restart_still_keeps_its_distortion_limit() -> None:
    # Memory may spread, but the vCPUs' homes must still meet the limit: 16 apart virtually,
    # at best 12 physically, weighted 1: distortion 4 > 0 on any mapping.
    vd = np.array([[10, 16], [16, 10]])
    g = GuestShape(
        restart_mib=np.array([0, 256]), vcpu_count=np.array([1, 0]), vdist=vd, max_distortion=0.0
    )
    hs = hosts([[0, 0], [0, 256]], shapes=(NEAR2,))
    plan = plan_failover(hs, domains((0, g)), allow_spread=True)
    assert not plan.tolerated and plan.exact
    assert plan.worst is not None
    assert plan.worst.unplaced[0].reason == (
        "no surviving host's topology has a mapping within its distortion limit 0"
    )
