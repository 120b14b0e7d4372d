"""Balloon-driver progress, stuck guests, and the steps a pool change puts on a host's queue.

Squeezed's rules, with the guest's own per-vnode reports as the "actual" size:
- a driver that made no progress toward its target for ``inactive_after_s`` is left out of
  squeezes (it may just be slow);
- after ``uncooperative_after_s`` it is flagged ``uncooperative`` (an event is written): squeezes
  hold it at its actual size and never count on it to give memory back;
- progress (a report closer to the target) clears the flag.

A report can lower a vnode's charge toward its target but never raise it: memory the guest claims
to hold beyond what it was given cannot exist, and believing it could overcommit a pnode.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, cast

import numpy as np
from sqlalchemy import ColumnElement, String, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import UpdateBase

from service.db.audit import record_event
from service.db.base import new_id
from service.db.models import Domain, Step
from service.db.state import WriteBatch
from service.db.status import write_status
from service.engine.steps import pool_change_ops
from service.engine.topology import VirtualTopology
from service.settings import Settings

GUEST_OPS = ("plug", "unplug", "balloon")


def actual_total(domain: Domain) -> int | None:
    reports = [vn.actual_mib for vn in domain.vnodes]
    if any(r is None for r in reports):
        return None
    return sum(r for r in reports if r is not None)


def stalled_for(domain: Domain, now: datetime) -> timedelta:
    """How long the driver has gone without progress toward an unmet target."""
    actual = actual_total(domain)
    if actual is None or actual == domain.target_mib:
        return timedelta(0)
    since = max(domain.last_progress_at or domain.target_set_at, domain.target_set_at)
    return max(now - since, timedelta(0))


def is_active(domain: Domain, now: datetime, settings: Settings) -> bool:
    if domain.uncooperative or domain.state != "running":
        return False  # a migrating domain's pools follow its plan, not the squeeze
    return stalled_for(domain, now) <= timedelta(seconds=settings.inactive_after_s)


def sweep(
    session: Session, domains: Iterable[Domain], now: datetime, settings: Settings, actor: str
) -> list[str]:
    """Flag drivers stalled past ``uncooperative_after_s``; returns the ids flagged now."""
    limit = timedelta(seconds=settings.uncooperative_after_s)
    flagged = []
    for d in domains:
        if not d.uncooperative and stalled_for(d, now) > limit:
            write_status(session, d, uncooperative=True)
            flagged.append(d.id)
            record_event(
                session,
                actor,
                "domain.uncooperative",
                "domain",
                d.id,
                before={"uncooperative": False},
                after={
                    "uncooperative": True,
                    "target_mib": d.target_mib,
                    "actual_mib": actual_total(d),
                    "stalled_s": stalled_for(d, now).total_seconds(),
                },
            )
    return flagged


def record_report(
    session: Session,
    domain: Domain,
    reported: dict[int, int],
    now: datetime,
    actor: str,
) -> bool:
    """Store a guest's per-vnode actual sizes; returns whether it made progress."""
    before = actual_total(domain)
    gap_before = None if before is None else abs(before - domain.target_mib)
    changes = {}
    for vn in domain.vnodes:
        if vn.index not in reported:
            continue
        ceiling = max(vn.target_mib, vn.actual_mib if vn.actual_mib is not None else vn.target_mib)
        value = min(reported[vn.index], ceiling, vn.size_mib)
        if vn.actual_mib != value:
            changes[vn.index] = (vn.actual_mib, value)
            vn.actual_mib = value
    after = actual_total(domain)
    gap_after = None if after is None else abs(after - domain.target_mib)
    progress = gap_after is not None and (
        gap_after == 0 or gap_before is None or gap_after < gap_before
    )
    if progress:
        was_uncooperative = domain.uncooperative
        write_status(session, domain, last_progress_at=now, uncooperative=False)
        if was_uncooperative:
            record_event(
                session,
                actor,
                "domain.cooperative",
                "domain",
                domain.id,
                before={"uncooperative": True},
                after={"uncooperative": False},
            )
    complete_pool_steps(session, domain.id, reported, now)
    return progress


def reached(step: Step, actual_mib: int) -> bool:
    """A pool operation is done once the pool is at its target or past it in its direction."""
    if step.target_mib is None:
        return False
    if step.grow is None:
        return actual_mib == step.target_mib
    return actual_mib >= step.target_mib if step.grow else actual_mib <= step.target_mib


def complete_pool_steps(
    session: Session,
    domain_id: str,
    reported: dict[int, int],
    now: datetime,
    by: str = "guest",
) -> int:
    """Pending pool operations a raw report (the guest's, or the host agent's view of the
    hypervisor) shows done need no agent ack."""
    steps = session.scalars(
        select(Step).where(
            Step.domain_id == domain_id, Step.state == "pending", Step.op.in_(GUEST_OPS)
        )
    ).all()
    done = 0
    for step in steps:
        if step.vnode in reported and reached(step, reported[step.vnode]):
            step.state = "acked"
            step.detail = f"{by} reported the pool at its target"
            step.acked_at = now
            done += 1
    return done


_STEPS = cast(Table, Step.__table__)


def _cancel_pool_steps(domains: ColumnElement[bool]) -> UpdateBase:
    c = _STEPS.c
    return (
        update(_STEPS)
        .where(domains, c.state == "pending", c.migration_id.is_(None))
        .values(state="cancelled", detail="superseded by a newer target")
    )


def cancel_pool_steps(x: str) -> UpdateBase:
    """The domain's pending steps outside migrations, cancelled (parameter: domain)."""
    return _cancel_pool_steps(_STEPS.c.domain_id == bindparam(x + "domain", type_=String()))


_CANCEL_MANY = _cancel_pool_steps(_STEPS.c.domain_id.in_(bindparam("domains", expanding=True)))
_INSERT_STEPS = insert(_STEPS)


def pool_change_rows(
    domain_id: str,
    host_id: str,
    topo: VirtualTopology,
    before_mib: np.ndarray,
    after_mib: np.ndarray,
    homes: list[int],
    now: datetime,
) -> list[dict[str, Any]]:
    """The steps rows that take the domain's pools from `before_mib` to `after_mib`.

    `seq` only orders one domain's batch: the previous batch's pending steps are cancelled by
    then, and agents read pending steps by (created_at, seq)."""
    return [
        {
            "id": new_id(),
            "migration_id": None,
            "domain_id": domain_id,
            "host_id": host_id,
            "seq": seq,
            "phase": "balloon",
            "op": op.op,
            "vnode": op.vnode,
            "pnode": homes[op.vnode],
            "mib": op.mib,
            "pfn_ranges": [list(r) for r in op.pfn_ranges],
            "target_mib": op.target_mib,
            "grow": op.grow,
            "state": "pending",
            "detail": None,
            "created_at": now,
            "acked_at": None,
        }
        for seq, op in enumerate(
            pool_change_ops(topo=topo, before_mib=before_mib, after_mib=after_mib), start=1
        )
    ]


def enqueue_pool_changes(
    batch: WriteBatch,
    domain: Domain,
    host_id: str,
    topo: VirtualTopology,
    before_mib: np.ndarray,
    after_mib: np.ndarray,
    homes: list[int],
    now: datetime,
) -> None:
    """Replace the domain's pending target-change steps with the ones for the new targets.

    Two plain table statements in the batch, however many steps (pending steps are not held as
    ORM objects by the callers)."""
    batch.add(cancel_pool_steps, {"domain": domain.id})
    batch.add_rows(
        _STEPS, pool_change_rows(domain.id, host_id, topo, before_mib, after_mib, homes, now)
    )


def replace_pool_steps(session: Session, domain_ids: list[str], rows: list[dict[str, Any]]) -> None:
    """`enqueue_pool_changes` for many domains at once (a squeeze): two statements, however many
    domains and steps; `rows` from `pool_change_rows`."""
    if domain_ids:
        session.execute(_CANCEL_MANY, {"domains": domain_ids})
    if rows:
        session.execute(_INSERT_STEPS, rows)
