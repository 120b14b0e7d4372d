"""The host agent API: observed free memory per pnode, and the host's queue of steps.

An agent token is bound to one host; every route takes that host's id and refuses any other.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from sqlalchemy import select

from service.api.auth import Agent
from service.api.deps import Now, SessionDep, SettingsDep
from service.api.problems import Conflict, NotFound, responses
from service.core.agent_report import agent_report, observe_host
from service.core.migrations import drive, fail_for_step, mark_progress, migrate_destinations
from service.core.sweeper import sweep_migrations
from service.db.audit import record_event
from service.db.models import Migration, Step
from service.db.retry import retry_transaction
from service.schemas.agent import (
    AckIn,
    AgentReportIn,
    AgentReportOut,
    ObservedIn,
    ObservedOut,
    StepList,
    StepOut,
)

router = APIRouter(prefix="/v1/agent/hosts/{host_id}", tags=["agent"])


@router.put(
    "/observed",
    response_model=ObservedOut,
    responses=responses(401, 403, 404, 422),
    summary="Report free MiB per pnode as the hypervisor sees it; large drift is flagged",
)
@retry_transaction
def observed(
    host_id: str,
    body: ObservedIn,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Agent,
    now: Now,
) -> ObservedOut:
    # The heartbeat also sweeps migrations whose claims expired (a toolstack client that started
    # one and vanished), in transactions of their own, before this host's lock (lock order).
    session.commit()  # end the token lookup's transaction: on SQLite it holds the write lock
    sweep_migrations(request.app.state.sessionmaker, now, settings)
    reported = {p.index: p.free_mib for p in body.pnodes}
    flagged, rows = observe_host(session, host_id, reported, now, settings, principal.actor)
    out = ObservedOut(
        host_id=host_id,
        drift_flagged=flagged,
        threshold_mib=settings.drift_threshold_mib,
        pnodes=rows,
    )
    session.commit()
    return out


@router.post(
    "/report",
    response_model=AgentReportOut,
    responses=responses(401, 403, 404, 422),
    summary="Batch report: free MiB per pnode and every domain's per-vnode actual size",
)
def batch_report(
    host_id: str,
    body: AgentReportIn,
    session: SessionDep,
    settings: SettingsDep,
    principal: Agent,
    now: Now,
) -> AgentReportOut:
    # One request per host per interval; status only. Lapsed claims are freed by the background
    # sweeper, not here: at 1,000 reports a second a sweep per report would cost more than it.
    out = agent_report(session, host_id, body, now, settings, principal.actor)
    session.commit()
    return out


def _step_out(step: Step) -> StepOut:
    return StepOut.model_validate(step, from_attributes=True)


@router.get(
    "/steps",
    response_model=StepList,
    responses=responses(401, 403, 422),
    summary="Pending steps for this host, oldest first",
)
def steps(host_id: str, session: SessionDep, _: Agent) -> StepList:
    rows = session.scalars(
        select(Step)
        .where(Step.host_id == host_id, Step.state == "pending")
        .order_by(Step.created_at, Step.seq)
        .limit(1000)
    ).all()
    items = [_step_out(s) for s in rows]
    destinations = migrate_destinations(
        session, [s.migration_id for s in rows if s.op == "migrate"]
    )
    for item in items:
        if item.op == "migrate" and item.migration_id in destinations:
            item.destination = destinations[item.migration_id]
    return StepList(items=items)


@router.post(
    "/steps/{step_id}/ack",
    response_model=StepOut,
    responses=responses(401, 403, 404, 409, 422),
    summary="Acknowledge a step (ok) or report that it failed",
)
@retry_transaction
def ack(
    host_id: str,
    step_id: uuid.UUID,
    body: AckIn,
    session: SessionDep,
    settings: SettingsDep,
    principal: Agent,
    now: Now,
) -> StepOut:
    # Lock order as in advance: the migration row before its step rows.
    ref = session.execute(
        select(Step.migration_id).where(Step.id == str(step_id), Step.host_id == host_id)
    ).first()
    if ref is None:
        raise NotFound(f"no step {step_id} on this host")
    migration = None
    if ref.migration_id is not None:
        migration = session.scalars(
            select(Migration).where(Migration.id == ref.migration_id).with_for_update()
        ).first()
    step = session.scalars(
        select(Step).where(Step.id == str(step_id), Step.host_id == host_id).with_for_update()
    ).first()
    if step is None:
        raise NotFound(f"no step {step_id} on this host")
    outcome = "acked" if body.ok else "failed"
    if step.state == outcome:
        return _step_out(step)  # a retried ack: same answer, nothing changes
    if step.state != "pending":
        raise Conflict(f"the step is already {step.state}")
    step.state = outcome
    step.detail = body.detail
    step.acked_at = now
    if migration is not None:
        mark_progress(session, migration, now, principal.actor)
    record_event(
        session,
        principal.actor,
        f"step.{outcome}",
        "step",
        step.id,
        after={"op": step.op, "domain_id": step.domain_id, "detail": body.detail},
    )
    session.flush()
    out = _step_out(step)
    session.commit()
    # What the ack unblocks happens now, each in a transaction of its own (host locks after the
    # step's): a failed step ends its migration, an acked one lets an auto-advance go on.
    if step.migration_id is not None:
        if outcome == "failed":
            fail_for_step(session, step, principal.actor, now)
        else:
            drive(session, step.migration_id, settings, now)
    return out
