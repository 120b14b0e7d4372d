"""Balloon-driver progress, stuck guests, and the steps a pool change puts on a host's queue.

Squeezed's rules, with the guest's own per-vnode reports as the "actual" size:
- a driver that made no progress toward its target for ``inactive_after_s`` is left out of
  squeezes (it may just be slow);
- after ``uncooperative_after_s`` it is flagged ``uncooperative`` (an event is written): squeezes
  hold it at its actual size and never count on it to give memory back;
- progress (a report closer to the target) clears the flag.

A report can lower a vnode's charge toward its target, and raise it only to the whole block its
target or what it held lies in (capped at its span and, by the caller, at the pnodes' free
memory): a backend that plugs whole blocks (virtio-mem) holds the top block whole, and the service
must never count less than the hypervisor holds; anything beyond cannot exist, and believing it
could overcommit a pnode. A vnode counts as at its target anywhere from its target up to that
target's whole block (`off_target_mib`): a whole-block backend cannot be nearer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from service.db.changes import ChangeSet, Row, event, step_row
from service.db.models import Domain, Step
from service.db.steps import pending_guest_op, set_step_failure
from service.engine.steps import pool_change_ops
from service.engine.topology import VirtualTopology
from service.settings import Settings


def block_ceil(mib: int, block_mib: int) -> int:
    """`mib` rounded up to a whole block of the vnode (blocks are laid from the vnode's start)."""
    return -(-mib // block_mib) * block_mib


def off_target_mib(
    actual_mib: Sequence[int | None], target_mib: Sequence[int], block_mib: int
) -> int | None:
    """How far a domain's pools are from their targets, None until every pool has reported: per
    vnode, below its target or above the whole block its target lies in (a backend that plugs
    whole blocks holds the top block whole; 0 in between)."""
    gap = 0
    for actual, target in zip(actual_mib, target_mib, strict=True):
        if actual is None:
            return None
        gap += max(target - actual, 0) + max(actual - block_ceil(target, block_mib), 0)
    return gap


def domain_off_target(domain: Domain) -> int | None:
    return off_target_mib(
        [vn.actual_mib for vn in domain.vnodes],
        [vn.target_mib for vn in domain.vnodes],
        domain.block_mib,
    )


def actual_total(domain: Domain) -> int | None:
    return total_reported([vn.actual_mib for vn in domain.vnodes])


def total_reported(sizes: Sequence[int | None]) -> int | None:
    """A domain's reported size: the sum of its pools, None until every pool has reported."""
    if any(s is None for s in sizes):
        return None
    return sum(s for s in sizes if s is not None)


def stalled_for(domain: Domain, now: datetime) -> timedelta:
    """How long the driver has gone without progress toward an unmet target."""
    return stall_time(
        domain_off_target(domain),
        last_progress_at=domain.last_progress_at,
        target_set_at=domain.target_set_at,
        now=now,
    )


def stall_time(
    off_target: int | None,
    *,
    last_progress_at: datetime | None,
    target_set_at: datetime,
    now: datetime,
) -> timedelta:
    """`stalled_for` of a domain given as values: how far its pools are from their targets
    (`off_target_mib`: None until every pool has reported) and when either last moved."""
    if off_target is None or off_target == 0:
        return timedelta(0)
    since = max(last_progress_at or target_set_at, target_set_at)
    return max(now - since, timedelta(0))


def capped(
    reported_mib: int, *, target_mib: int, actual_mib: int | None, size_mib: int, block_mib: int
) -> int:
    """What a vnode's reported size is taken to be: at most the whole block the larger of its
    target and what it held before lies in (its target when it never reported: a backend that
    plugs whole blocks holds the top block whole), and at most its size."""
    held = actual_mib if actual_mib is not None else target_mib
    return min(reported_mib, block_ceil(max(target_mib, held), block_mib), size_mib)


def within_headroom(
    changes: dict[int, int], domain: Domain, headroom_mib: np.ndarray, backing: np.ndarray
) -> dict[int, int]:
    """Reported sizes above what a vnode held or its target (the top block a whole-block backend
    holds) charged only where its pnodes have the room: the part that does not fit is left
    uncounted (``headroom_mib`` (P,), taken from as it is granted; ``backing`` (V, P))."""
    out = dict(changes)
    for vn in domain.vnodes:
        mib = out.get(vn.index)
        if mib is None:
            continue
        counted = max(vn.target_mib, vn.actual_mib if vn.actual_mib is not None else 0)
        extra = mib - counted
        if extra <= 0:
            continue
        pnodes = np.flatnonzero(backing[vn.index] > 0)
        if len(pnodes) == 0:
            pnodes = np.array([vn.home_pnode or 0])
        room = int(headroom_mib[pnodes].min())
        granted = max(min(extra, room), 0)
        headroom_mib[pnodes] -= granted
        out[vn.index] = counted + granted
    return out


def is_active(domain: Domain, now: datetime, settings: Settings) -> bool:
    if domain.uncooperative or domain.state != "running":
        return False  # a migrating domain's pools follow its plan, not the squeeze
    return stalled_for(domain, now) <= timedelta(seconds=settings.inactive_after_s)


def stalled(
    domains: Iterable[Domain], now: datetime, settings: Settings, *, actor: str
) -> ChangeSet:
    """Drivers stalled past ``uncooperative_after_s``, flagged (pure: the change set)."""
    limit = timedelta(seconds=settings.uncooperative_after_s)
    changes = ChangeSet()
    for d in domains:
        if d.uncooperative or stalled_for(d, now) <= limit:
            continue
        changes.status.append((d, {"uncooperative": True}))
        after = {
            "uncooperative": True,
            "target_mib": d.target_mib,
            "actual_mib": actual_total(d),
            "stalled_s": stalled_for(d, now).total_seconds(),
        }
        changes.events.append(
            event(
                actor,
                "domain.uncooperative",
                "domain",
                d.id,
                before={"uncooperative": False},
                after=after,
                at=now,
            )
        )
    return changes


def observe(
    domain: Domain,
    reported: dict[int, int],
    now: datetime,
    *,
    actor: str,
    action: str,
    fit: Callable[[dict[int, int]], dict[int, int]] | None = None,
) -> tuple[ChangeSet, bool]:
    """A report of the pools' actual sizes (the guest's own, or the host agent's view of the
    hypervisor), as a change set and whether it made progress (pure).

    A vnode's value is capped at the whole block the larger of its target and what it held
    before lies in, and at its size (`capped`); `fit` may lower what would be charged above
    that (the pnodes' free memory: `within_headroom`)."""
    before = {vn.index: vn.actual_mib for vn in domain.vnodes}
    taken = {
        vn.index: capped(
            reported[vn.index],
            target_mib=vn.target_mib,
            actual_mib=vn.actual_mib,
            size_mib=vn.size_mib,
            block_mib=domain.block_mib,
        )
        for vn in domain.vnodes
        if vn.index in reported
    }
    after: dict[int, int | None] = {**before, **(fit(taken) if fit is not None else taken)}
    targets = [vn.target_mib for vn in domain.vnodes]
    gap_after = off_target_mib(list(after.values()), targets, domain.block_mib)
    progress = _closer(before, gap_after, targets, domain.block_mib)
    # A flagged driver found at its target cooperates again, moving or not.
    at_target = gap_after == 0
    changes = ChangeSet()
    if after != before:
        changes.actual_mib[domain.id] = {
            v: mib for v, mib in after.items() if mib is not None and mib != before[v]
        }
        changes.events.append(
            event(
                actor,
                action,
                "domain",
                domain.id,
                before={"actual_mib": {str(k): v for k, v in before.items()}},
                after={"actual_mib": {str(k): v for k, v in after.items()}, "progress": progress},
                at=now,
            )
        )
    if progress or (domain.uncooperative and at_target):
        changes.status.append((domain, {"last_progress_at": now, "uncooperative": False}))
        if domain.uncooperative:
            changes.events.insert(
                0,
                event(
                    actor,
                    "domain.cooperative",
                    "domain",
                    domain.id,
                    before={"uncooperative": True},
                    after={"uncooperative": False},
                    at=now,
                ),
            )
    return changes, progress


def _closer(
    before: dict[int, int | None], gap_after: int | None, targets: list[int], block_mib: int
) -> bool:
    """Progress: every pool reported (`gap_after`: how far they are now, `off_target_mib`), and
    the pools nearer their targets than before (or first reported). A driver that stays at its
    target makes none: it is not stalled either (`stalled_for` is 0 at the target), and its rows
    need no write every report."""
    if gap_after is None:
        return False
    gap_before = off_target_mib(list(before.values()), targets, block_mib)
    return gap_before is None or gap_after < gap_before


def reached(step: Step, actual_mib: int) -> bool:
    """A pool operation is done once the pool is at its target or past it in its direction."""
    if step.target_mib is None:
        return False
    if step.grow is None:
        return actual_mib == step.target_mib
    return actual_mib >= step.target_mib if step.grow else actual_mib <= step.target_mib


def complete_pool_steps(
    session: Session,
    reports: dict[str, dict[int, int]],
    now: datetime,
    by: str = "guest",
) -> set[str]:
    """Pending pool operations that raw reports (domain id -> vnode -> MiB: the guest's, or
    the host agent's view of the hypervisor) show done need no agent ack. One query for all the
    reported domains; the acks are written with the transaction's flush. Returns the migrations
    whose steps this acknowledged: the caller drives them on once it commits."""
    if not reports:
        return set()
    steps = session.scalars(_PENDING_POOL_STEPS, {"b_domains": list(reports)}).all()
    migrations: set[str] = set()
    done: set[str] = set()
    for step in steps:
        reported = reports[step.domain_id]
        if step.vnode in reported and reached(step, reported[step.vnode]):
            step.state = "acked"
            step.detail = f"{by} reported the pool at its target"
            step.acked_at = now
            done.add(step.domain_id)
            if step.migration_id is not None:
                migrations.add(step.migration_id)
    set_step_failure(session, sorted(done), None)  # a pool step done: no failure to show
    return migrations


_PENDING_POOL_STEPS = select(Step).where(
    Step.domain_id.in_(bindparam("b_domains", expanding=True)), pending_guest_op()
)


def held_levels(domain: Domain, targets_mib: np.ndarray) -> np.ndarray:
    """Each pool's level a change starts from: its reported size, else its target (never
    reported). Steps sized from the previous target were wrong by what the guest had not done
    (an unplug of 384 MiB where 128 were needed) and a failed step was never issued again."""
    out = np.asarray(targets_mib, dtype=np.int64).copy()
    for vn in domain.vnodes:
        if vn.actual_mib is not None and vn.index < len(out):
            out[vn.index] = vn.actual_mib
    return out


def pool_change_rows(
    domain_id: str,
    host_id: str,
    topo: VirtualTopology,
    before_mib: np.ndarray,
    after_mib: np.ndarray,
    homes: list[int],
    now: datetime,
) -> list[Row]:
    """The steps rows that take the domain's pools from `before_mib` to `after_mib`.

    `seq` only orders one domain's batch: the previous batch's pending steps are cancelled by
    then, and agents read pending steps by (created_at, seq)."""
    return [
        step_row(
            domain_id=domain_id,
            host_id=host_id,
            seq=seq,
            phase="balloon",
            op=op.op,
            vnode=op.vnode,
            pnode=homes[op.vnode],
            mib=op.mib,
            pfn_ranges=[list(r) for r in op.pfn_ranges],
            target_mib=op.target_mib,
            grow=op.grow,
            created_at=now,
        )
        for seq, op in enumerate(
            pool_change_ops(topo=topo, before_mib=before_mib, after_mib=after_mib), start=1
        )
    ]
