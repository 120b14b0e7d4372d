"""Rebalance budgets: whole-block moves bring memory home, never more than the budget per
round, never beyond capacity (no database)."""

from __future__ import annotations

from service.core.rebalancing import plan_host_rebalance
from service.schemas.migrations import RebalanceRequest
from tests.core.sim import Driver, Sim, make_domain, make_host


def _remote_sim() -> Sim:
    host = make_host([16384, 16384])
    a, a_backing = make_domain("vm0", host, [4096, 4096], [0, 1], backing_on=[1, 1])
    b, b_backing = make_domain("vm1", host, [2048], [0])
    return Sim.of(host, [(a, a_backing, Driver.IDEAL), (b, b_backing, Driver.IDEAL)])


def test_each_round_stays_within_its_budget_until_memory_is_home() -> None:
    sim = _remote_sim()
    remote = int(sim.accounting.backing[sim.domain("vm0").id][0, 1])
    assert remote == 4096
    rounds, moved, distortion = 0, 0, float("inf")
    while True:
        out, changes = plan_host_rebalance(
            sim.accounting, RebalanceRequest(budget_mib=1024), actor="t", now=sim.now
        )
        if not out.moves:
            break
        assert 0 < out.moved_mib <= 1024
        assert out.distortion_after <= out.distortion_before <= distortion
        distortion = out.distortion_after
        assert len(changes.new_steps) == 2 * len(out.moves)  # an unplug and a plug per move
        assert {s["op"] for s in changes.new_steps} == {"unplug", "plug"}
        sim.commit(changes)
        moved += out.moved_mib
        rounds += 1
        assert rounds < 20
    backing = sim.accounting.backing[sim.domain("vm0").id]
    assert backing[0, 1] == 0 and backing[0, 0] == 4096  # vnode 0 now lives on its home pnode
    assert moved == remote and rounds == remote // 1024
    assert sim.domain("vm1").version == 1  # a domain nothing moved is not touched


def test_a_dry_run_and_a_home_host_change_nothing() -> None:
    sim = _remote_sim()
    plan_host_rebalance(sim.accounting, RebalanceRequest(budget_mib=0), actor="t", now=sim.now)
    host = make_host([8192])
    d, backing = make_domain("vm", host, [2048], [0])
    home = Sim.of(host, [(d, backing, Driver.IDEAL)])
    out, changes = plan_host_rebalance(
        home.accounting, RebalanceRequest(budget_mib=8192), actor="t", now=home.now
    )
    assert not out.moves and not changes
