"""A target change as a change set, and what refuses one (no database)."""

from __future__ import annotations

import types

import numpy as np
import pytest

from service.core.domains import retarget, topology_of
from service.engine.errors import TopologyError
from service.errors import Conflict, Infeasible, InvalidInput
from service.schemas.domains import TargetPut
from tests.core.sim import Driver, Sim, make_domain, make_host


def _sim() -> Sim:
    host = make_host([8192, 8192])
    d, backing = make_domain("vm", host, [4096, 4096], [0, 1], dynamic_min_mib=1024)
    other, other_backing = make_domain("big", host, [4096, 4096], [0, 1])
    return Sim.of(host, [(d, backing, Driver.IDEAL), (other, other_backing, Driver.IDEAL)])


def test_a_lower_target_is_new_backing_pool_steps_one_event_and_a_new_version() -> None:
    sim = _sim()
    d = sim.domain("vm")
    changes = retarget(sim.accounting, d, TargetPut(target_mib=4096), actor="t", now=sim.now)
    assert changes.backing[d.id].sum() == 4096
    assert [t.target_mib for t in changes.targets] == [4096]
    steps = changes.pool_steps[d.id]
    assert steps and all(s["grow"] is False and s["host_id"] == d.host_id for s in steps)
    assert [e["action"] for e in changes.events] == ["domain.target_changed"]
    assert [e["at"] for e in changes.events] == [sim.now]  # the decision's clock, not the wall's
    sim.commit(changes)
    assert d.target_mib == 4096 and d.version == 2
    assert [vn.target_mib for vn in d.vnodes] == [2048, 2048]
    # Charged at what the guest still holds until it reports, then at the new backing.
    assert np.array_equal(sim.free_mib(), [0, 0])
    sim.tick()
    assert np.array_equal(sim.free_mib(), [2048, 2048])


def test_what_refuses_a_target() -> None:
    sim = _sim()
    d = sim.domain("vm")
    with pytest.raises(InvalidInput, match="dynamic range"):
        retarget(sim.accounting, d, TargetPut(target_mib=512), actor="t", now=sim.now)
    explicit = TargetPut(target_mib=4096, vnode_targets_mib=[4096, 0])
    with pytest.raises(InvalidInput, match="only with, policy 'explicit'"):
        retarget(sim.accounting, d, explicit, actor="t", now=sim.now)
    sim.commit(retarget(sim.accounting, d, TargetPut(target_mib=4096), actor="t", now=sim.now))
    sim.tick()
    assert np.array_equal(sim.free_mib(), [2048, 2048])
    sim.accounting.claimed_mib += 1024  # an incoming migration's claims on each pnode
    with pytest.raises(Infeasible):  # claimed memory is never given to a target
        retarget(sim.accounting, d, TargetPut(target_mib=8192), actor="t", now=sim.now)
    d.state = "migrating"
    with pytest.raises(Conflict, match="migrating"):
        retarget(sim.accounting, d, TargetPut(target_mib=4096), actor="t", now=sim.now)


def test_a_vnode_target_below_its_floor_is_refused_located() -> None:
    """Issue 27: a vnode asked below its boot memory (its share of dynamic_min_mib in whole
    blocks) stuck forever on a real guest; such a target is now a located 422, and a policy
    whose distribution would do it is refused naming the vnodes."""
    sim = _sim()  # vm: 2 x 4096, dynamic_min 1024 -> a floor of 512 per vnode
    d = sim.domain("vm")
    low = TargetPut(target_mib=4096, policy="explicit", vnode_targets_mib=[3840, 256])
    with pytest.raises(InvalidInput) as refused:
        retarget(sim.accounting, d, low, actor="t", now=sim.now)
    assert [e["loc"] for e in refused.value.errors] == [["body", "vnode_targets_mib", 1]]
    assert "floor of 512 MiB" in refused.value.errors[0]["msg"]
    ok = TargetPut(target_mib=4096, policy="explicit", vnode_targets_mib=[3584, 512])
    assert retarget(sim.accounting, d, ok, actor="t", now=sim.now).targets
    # faithful mirrors the host: here it would leave a vnode empty.
    d.vnodes[1].home_pnode = 0
    with pytest.raises(InvalidInput, match="policy 'faithful' would put vnode 0 at 0 < 512"):
        retarget(
            sim.accounting, d, TargetPut(target_mib=1024, policy="faithful"), actor="t", now=sim.now
        )


def test_a_domains_topology_is_built_once_and_a_bad_one_still_refused() -> None:
    """`topology_of` reuses the topology built from the same lists (it is immutable); lists
    that are not a valid topology raise every time, as when it was built anew each call."""
    sim = _sim()
    d = sim.domain("vm")
    first, again = topology_of(d), topology_of(d)
    assert again is first
    assert np.array_equal(first.size_mib, [4096, 4096]) and not first.size_mib.flags.writeable
    bad = types.SimpleNamespace(
        vnodes=d.vnodes, distances=[[10, 5], [5, 10]], block_mib=d.block_mib
    )
    for _ in range(2):
        with pytest.raises(TopologyError):
            topology_of(bad)  # type: ignore[arg-type]
