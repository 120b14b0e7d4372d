"""AutoNUMA for one host: whole-block moves that bring memory closer to what guests believe."""

from __future__ import annotations

from datetime import datetime

import numpy as np
from sqlalchemy.orm import Session

from service.core.domains import commit_accounting, set_backing, topology_of
from service.db.audit import record_event
from service.db.models import Step
from service.db.state import HostState, load_host_state
from service.engine.rebalance import RebalancePlan, plan_rebalance
from service.errors import NotFound
from service.schemas.migrations import BlockMoveOut, RebalanceOut, RebalanceRequest


def _plan(state: HostState, budget_mib: int) -> RebalancePlan:
    doms = state.domains
    n, p = len(doms), state.n_pnodes
    v = max((len(d.vnodes) for d in doms), default=1)
    x = np.zeros((n, v, p), dtype=np.int64)
    size = np.zeros((n, v), dtype=np.int64)
    vdist = np.full((n, v, v), 10, dtype=np.int64)
    vcpus = np.zeros((n, v), dtype=np.int64)
    home = np.zeros((n, v), dtype=np.int64)
    for i, d in enumerate(doms):
        k = len(d.vnodes)
        topo = topology_of(d)
        x[i, :k] = state.backing[d.id]
        size[i, :k] = topo.size_mib
        vdist[i, :k, :k] = topo.distances
        vcpus[i, :k] = topo.vcpu_count()
        home[i, :k] = [vn.home_pnode or 0 for vn in d.vnodes]
    movable = np.array([d.state == "running" for d in doms], dtype=bool)
    size = np.where(movable[:, None], size, x.sum(axis=2))  # migrating domains stay put
    return plan_rebalance(
        backing_mib=x,
        size_mib=size,
        vdist=vdist,
        vcpu_count=vcpus,
        home=home,
        block_mib=np.array([d.block_mib for d in doms] or [128], dtype=np.int64)[: max(n, 1)],
        pdist=state.pdist,
        free_mib=np.maximum(state.headroom_mib(), 0),
        budget_mib=budget_mib,
    )


def rebalance_host(
    session: Session, host_id: str, body: RebalanceRequest, actor: str, now: datetime
) -> RebalanceOut:
    state = load_host_state(session, host_id, lock=not body.dry_run, now=now)
    if state is None:
        raise NotFound(f"no host with id {host_id}")
    doms = state.domains
    if not doms:
        return RebalanceOut(
            host_id=host_id,
            dry_run=body.dry_run,
            moves=[],
            moved_mib=0,
            distortion_before=0.0,
            distortion_after=0.0,
            remote_fraction_before=0.0,
            remote_fraction_after=0.0,
        )
    plan = _plan(state, body.budget_mib)
    out = RebalanceOut(
        host_id=host_id,
        dry_run=body.dry_run,
        moves=[
            BlockMoveOut(
                domain_id=doms[m.domain].id,
                from_vnode=m.from_vnode,
                from_pnode=m.from_pnode,
                to_vnode=m.to_vnode,
                to_pnode=m.to_pnode,
                mib=m.mib,
                pfn_ranges=[list(r) for r in m.pfn_ranges],
            )
            for m in plan.moves
        ],
        moved_mib=plan.moved_mib,
        distortion_before=plan.distortion_before,
        distortion_after=plan.distortion_after,
        remote_fraction_before=plan.remote_fraction_before,
        remote_fraction_after=plan.remote_fraction_after,
    )
    if body.dry_run or not plan.moves:
        return out
    touched = sorted({m.domain for m in plan.moves})
    set_backing(
        session,
        state,
        [(doms[i], plan.backing_after_mib[i, : len(doms[i].vnodes)].copy()) for i in touched],
    )
    commit_accounting(state)
    for seq, m in enumerate(plan.moves):
        d = doms[m.domain]
        # "Balloon down and up this PFN block on NUMA node X": unplug here, plug there.
        for op, vnode, pnode, ranges in (
            ("unplug", m.from_vnode, m.from_pnode, m.pfn_ranges),
            ("plug", m.to_vnode, m.to_pnode, m.to_pfn_ranges or m.pfn_ranges),
        ):
            session.add(
                Step(
                    domain_id=d.id,
                    host_id=host_id,
                    seq=2 * seq + (op == "plug"),
                    phase="rebalance",
                    op=op,
                    vnode=vnode,
                    pnode=pnode,
                    mib=m.mib,
                    pfn_ranges=[list(r) for r in ranges],
                    target_mib=None,
                    grow=None,
                    created_at=now,
                )
            )
    record_event(
        session,
        actor,
        "host.rebalanced",
        "host",
        host_id,
        after={
            "moves": len(plan.moves),
            "moved_mib": plan.moved_mib,
            "distortion_before": plan.distortion_before,
            "distortion_after": plan.distortion_after,
        },
    )
    return out
