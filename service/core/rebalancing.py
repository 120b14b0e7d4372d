"""AutoNUMA for one host: whole-block moves that bring memory closer to what guests believe."""

from __future__ import annotations

from datetime import datetime

import numpy as np
from sqlalchemy.orm import Session

from service.core.unit import discard
from service.db.accounting import HostAccounting
from service.db.apply import apply
from service.db.changes import ChangeSet, Row, event, step_row
from service.db.loaders import load_host_accounting
from service.engine.rebalance import RebalancePlan, plan_rebalance
from service.errors import NotFound
from service.schemas.migrations import BlockMoveOut, RebalanceOut, RebalanceRequest


def _plan(state: HostAccounting, budget_mib: int) -> RebalancePlan:
    doms = state.domains
    arrays = state.arrays()
    n, v = arrays.size_mib.shape
    vdist = np.full((n, v, v), 10, dtype=np.int64)
    for i, d in enumerate(doms):
        k = len(d.vnodes)
        vdist[i, :k, :k] = d.distances
    movable = np.array([d.state == "running" for d in doms], dtype=bool)
    # migrating domains stay put
    size = np.where(movable[:, None], arrays.size_mib, arrays.backing_mib.sum(axis=2))
    return plan_rebalance(
        backing_mib=arrays.backing_mib,
        size_mib=size,
        vdist=vdist,
        vcpu_count=arrays.vcpu_count,
        home=arrays.home,
        block_mib=np.array([d.block_mib for d in doms] or [128], dtype=np.int64)[: max(n, 1)],
        pdist=state.pdist,
        free_mib=np.maximum(state.headroom_mib(), 0),
        budget_mib=budget_mib,
    )


def rebalance_host(
    session: Session, host_id: str, body: RebalanceRequest, actor: str, now: datetime
) -> RebalanceOut:
    state = load_host_accounting(session, host_id, lock=not body.dry_run, now=now)
    if state is None:
        raise NotFound(f"no host with id {host_id}")
    out, changes = plan_host_rebalance(state, body, actor=actor, now=now)
    if body.dry_run:
        discard(session)  # nothing is written: the unit rolls back
    elif changes:
        apply(session, state, changes, now=now)
    return out


def plan_host_rebalance(
    state: HostAccounting, body: RebalanceRequest, *, actor: str, now: datetime
) -> tuple[RebalanceOut, ChangeSet]:
    """The block moves within `body.budget_mib` and their change set (pure; empty when nothing
    moves): new backing, an unplug and a plug step per move, one event."""
    if not state.domains:
        return _out(state, body, None), ChangeSet()
    plan = _plan(state, body.budget_mib)
    if not plan.moves:
        return _out(state, body, plan), ChangeSet()
    doms = state.domains
    touched = sorted({m.domain for m in plan.moves})
    after = {
        "moves": len(plan.moves),
        "moved_mib": plan.moved_mib,
        "distortion_before": plan.distortion_before,
        "distortion_after": plan.distortion_after,
    }
    changes = ChangeSet(
        backing={
            doms[i].id: plan.backing_after_mib[i, : len(doms[i].vnodes)].copy() for i in touched
        },
        new_steps=_move_steps(state, plan, now),
        events=[event(actor, "host.rebalanced", "host", state.host.id, after=after)],
    )
    return _out(state, body, plan), changes


def _move_steps(state: HostAccounting, plan: RebalancePlan, now: datetime) -> list[Row]:
    """ "Balloon down and up this PFN block on NUMA node X": unplug here, plug there."""
    rows = []
    for seq, m in enumerate(plan.moves):
        for op, vnode, pnode, ranges in (
            ("unplug", m.from_vnode, m.from_pnode, m.pfn_ranges),
            ("plug", m.to_vnode, m.to_pnode, m.to_pfn_ranges or m.pfn_ranges),
        ):
            rows.append(
                step_row(
                    domain_id=state.domains[m.domain].id,
                    host_id=state.host.id,
                    seq=2 * seq + (op == "plug"),
                    phase="rebalance",
                    op=op,
                    vnode=vnode,
                    pnode=pnode,
                    mib=m.mib,
                    pfn_ranges=[list(r) for r in ranges],
                    created_at=now,
                )
            )
    return rows


def _out(state: HostAccounting, body: RebalanceRequest, plan: RebalancePlan | None) -> RebalanceOut:
    if plan is None:
        return RebalanceOut(
            host_id=state.host.id,
            dry_run=body.dry_run,
            moves=[],
            moved_mib=0,
            distortion_before=0.0,
            distortion_after=0.0,
            remote_fraction_before=0.0,
            remote_fraction_after=0.0,
        )
    doms = state.domains
    return RebalanceOut(
        host_id=state.host.id,
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
