"""The host agent's rules: observed free memory and drift, the step queue, step acks.

The batch report (`core/agent_report.py`) and the single observation (`PUT .../observed`) judge
drift alike: the observation reuses the report's drift rule rather than keeping a copy, so the
two heartbeats cannot disagree about when a host is flagged.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from service.core import recovery, unit
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
from service.vocabulary import GUEST_OPS


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


def pending_steps(session: Session, host_id: str, now: datetime) -> StepList:
    """The host's pending steps that are due (a retry waits out its backoff), oldest first; a
    migrate step names where the memory goes, a restart's start step the pnodes it is on."""
    rows = repo.pending_steps(session, host_id, now)
    items = [step_out(s) for s in rows]
    destinations = migrate_destinations(
        session, [s.migration_id for s in rows if s.op == "migrate"]
    )
    starts = recovery.start_destinations(
        session, host_id, [s.domain_id for s in rows if _is_restart(s.op, s.phase)]
    )
    for item in items:
        if item.op == "migrate" and item.migration_id in destinations:
            item.destination = destinations[item.migration_id]
        elif _is_restart(item.op, item.phase) and item.domain_id in starts:
            item.destination = starts[item.domain_id]
    return StepList(items=items)


def _is_restart(op: str, phase: str) -> bool:
    return op == recovery.START_OP and phase == recovery.RESTART_PHASE


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
        db, lambda session: record_ack(session, host_id, step_id, body, actor, now, settings)
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
    settings: Settings,
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
    recovery.on_step_acked(session, step, body.ok, actor, now)
    record_event(
        session,
        actor,
        f"step.{outcome}",
        "step",
        step.id,
        after={
            "op": step.op,
            "domain_id": step.domain_id,
            "detail": body.detail,
            "attempt": step.attempt,
        },
        at=now,
    )
    if step.migration_id is None and step.op in GUEST_OPS:
        if body.ok:
            repo.set_step_failure(session, [step.domain_id], None)
        else:
            retry_failed(session, step, settings, actor, now)
    session.flush()
    return step_out(step), step


def retry_backoff_s(attempt: int, settings: Settings) -> float:
    """The wait before attempt ``attempt + 1`` of a failed step: doubling, capped."""
    wait = settings.step_retry_backoff_s * 2.0 ** (attempt - 1)
    return float(min(wait, settings.step_retry_max_backoff_s))


def retry_failed(
    session: Session, step: Step, settings: Settings, actor: str, now: datetime
) -> Step | None:
    """A failed pool step of a target change (not a migration's: a failed step ends its
    migration) is issued again as a new step, attempt + 1, due after the backoff, while attempts
    are left; the domain keeps the failure (status) and an event says what happens next.
    Returns the new step, None once the attempts are spent."""
    spent = step.attempt >= settings.step_retry_attempts
    retry_at = None if spent else now + timedelta(seconds=retry_backoff_s(step.attempt, settings))
    failure = {
        "step_id": step.id,
        "op": step.op,
        "vnode": step.vnode,
        "attempt": step.attempt,
        "max_attempts": settings.step_retry_attempts,
        "detail": step.detail,
        "failed_at": now.isoformat(),
        "retry_at": None if retry_at is None else retry_at.isoformat(),
    }
    repo.set_step_failure(session, [step.domain_id], failure)
    again = None
    if retry_at is not None:
        again = Step(
            domain_id=step.domain_id,
            host_id=step.host_id,
            seq=step.seq,
            phase=step.phase,
            op=step.op,
            vnode=step.vnode,
            pnode=step.pnode,
            mib=step.mib,
            pfn_ranges=step.pfn_ranges,
            target_mib=step.target_mib,
            grow=step.grow,
            state="pending",
            attempt=step.attempt + 1,
            not_before=retry_at,
            created_at=now,
        )
        session.add(again)
        session.flush()
        failure["retry_step_id"] = again.id
    record_event(
        session,
        actor,
        "step.retries_exhausted" if again is None else "step.retry_scheduled",
        "domain",
        step.domain_id,
        after=failure,
        at=now,
    )
    return again
