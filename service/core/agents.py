"""The host agent's rules: observed free memory and drift, the step queue, step acks.

The batch report (`core/agent_report.py`) and the single observation (`PUT .../observed`) judge
drift alike: the observation reuses the report's drift rule rather than keeping a copy, so the
two heartbeats cannot disagree about when a host is flagged.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from service.core import unit
from service.core.agent_report import agent_report, drift, pnode_errors
from service.core.balloon import stalled
from service.core.migration_requests import drive_on
from service.core.migration_views import migrate_destinations
from service.core.migrations import fail_for_step, mark_progress
from service.core.sweeper import sweep_migrations
from service.core.unit import Database
from service.core.views import step_out
from service.db import steps as repo
from service.db.accounting import HostAccounting
from service.db.apply import apply
from service.db.audit import record_event
from service.db.loaders import load_host_accounting
from service.db.models import Step
from service.errors import Conflict, InvalidInput, NotFound
from service.schemas.agent import (
    AckIn,
    AgentReportIn,
    AgentReportOut,
    ObservedIn,
    ObservedOut,
    StepList,
    StepOut,
)
from service.settings import Settings


def _check_pnodes(state: HostAccounting, body: ObservedIn) -> None:
    bad = pnode_errors(state, [p.index for p in body.pnodes])
    if bad:
        raise InvalidInput("observed pnodes the host does not have", errors=bad)


def record_observed(
    db: Database,
    host_id: str,
    body: ObservedIn,
    settings: Settings,
    actor: str,
    now: datetime,
) -> ObservedOut:
    """The agent's heartbeat: store free MiB per pnode, flag or clear drift, sweep the host's
    balloon drivers. Migrations whose claims lapsed (a client that started one and vanished)
    are swept first, in transactions of their own, before this host's lock (lock order)."""
    sweep_migrations(db.write_factory, now, settings)
    return unit.write(
        db, lambda session: observe_host(session, host_id, body, settings, actor, now)
    )


def observe_host(
    session: Session,
    host_id: str,
    body: ObservedIn,
    settings: Settings,
    actor: str,
    now: datetime,
) -> ObservedOut:
    """`record_observed`'s unit of work, under the host's lock."""
    state = load_host_accounting(session, host_id, lock=True, now=now, lean=True)
    if state is None:
        raise NotFound(f"no host with id {host_id}")
    _check_pnodes(state, body)
    free = {p.index: p.free_mib for p in body.pnodes}
    flagged, rows, drifted = drift(state, free, now, settings, actor)
    # The agent's report is the host's heartbeat: evaluate its balloon drivers now.
    changes = drifted.merge(stalled(state.domains, now, settings, actor=actor))
    apply(session, state, changes, now=now)
    return ObservedOut(
        host_id=state.host.id,
        drift_flagged=flagged,
        threshold_mib=settings.drift_threshold_mib,
        pnodes=rows,
    )


def batch_report(
    db: Database,
    host_id: str,
    body: AgentReportIn,
    now: datetime,
    settings: Settings,
    actor: str,
) -> AgentReportOut:
    """One batch report in its unit of work; then the migrations whose pool steps it completed
    are driven on (their gates may have cleared), each step in a transaction of its own. Lapsed
    claims are freed by the background sweeper, not here: at 1,000 reports a second a sweep per
    report would cost more than it."""
    out, moved_on = unit.write(
        db, lambda session: agent_report(session, host_id, body, now, settings, actor)
    )
    drive_on(db, moved_on, settings, now)
    return out


def pending_steps(session: Session, host_id: str) -> StepList:
    """The host's pending steps, oldest first; a migrate step names where the memory goes."""
    rows = repo.pending_steps(session, host_id)
    items = [step_out(s) for s in rows]
    destinations = migrate_destinations(
        session, [s.migration_id for s in rows if s.op == "migrate"]
    )
    for item in items:
        if item.op == "migrate" and item.migration_id in destinations:
            item.destination = destinations[item.migration_id]
    return StepList(items=items)


def ack_step(
    db: Database,
    host_id: str,
    step_id: uuid.UUID,
    body: AckIn,
    settings: Settings,
    actor: str,
    now: datetime,
) -> StepOut:
    """Acknowledge a step (ok) or record its failure, in a unit of work; then what the ack
    unblocks runs, in transactions of its own (host locks after the step's): a failed step ends
    its migration, an acked one lets an auto-advance go on. A retried ack gets the same answer
    and changes nothing."""
    out, acked = unit.write(
        db, lambda session: record_ack(session, host_id, step_id, body, actor, now)
    )
    if acked is None or acked.migration_id is None:
        return out
    if not body.ok:
        unit.several(db, lambda session: fail_for_step(session, acked, actor, now))
    else:
        drive_on(db, [acked.migration_id], settings, now)
    return out


def record_ack(
    session: Session,
    host_id: str,
    step_id: uuid.UUID,
    body: AckIn,
    actor: str,
    now: datetime,
) -> tuple[StepOut, Step | None]:
    """`ack_step`'s unit of work: the answer, and the step when this ack changed it (None for
    a retried ack, which changes nothing)."""
    # Lock order as in advance: the migration row before its step rows.
    ref = repo.step_migration_id(session, host_id, str(step_id))
    if ref is None:
        raise NotFound(f"no step {step_id} on this host")
    migration_id = ref[0]
    migration = repo.lock_migration(session, migration_id) if migration_id is not None else None
    step = repo.lock_step(session, host_id, str(step_id))
    if step is None:
        raise NotFound(f"no step {step_id} on this host")
    outcome = "acked" if body.ok else "failed"
    if step.state == outcome:
        return step_out(step), None  # a retried ack: same answer, nothing changes
    if step.state != "pending":
        raise Conflict(f"the step is already {step.state}")
    step.state = outcome
    step.detail = body.detail
    step.acked_at = now
    if migration is not None:
        mark_progress(session, migration, now, actor)
    record_event(
        session,
        actor,
        f"step.{outcome}",
        "step",
        step.id,
        after={"op": step.op, "domain_id": step.domain_id, "detail": body.detail},
    )
    session.flush()
    return step_out(step), step
