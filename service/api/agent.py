"""The host agent API: observed free memory per pnode, and the host's queue of steps.

An agent token is bound to one host; every route takes that host's id and refuses any other.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from service.api.auth import Agent
from service.api.deps import Now, SessionDep, SettingsDep, run_db
from service.api.problems import responses
from service.api.render import model_response
from service.core import agents as core
from service.core.agent_report import agent_report
from service.core.migrations import drive
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
    session.commit()  # end the token lookup's transaction: on SQLite it holds the write lock
    out = core.record_observed(
        session, request.app.state.sessionmaker, host_id, body, settings, principal.actor, now
    )
    session.commit()
    return out


@router.post(
    "/report",
    response_model=AgentReportOut,
    responses=responses(401, 403, 404, 409, 422),
    summary="Batch report: free MiB per pnode and every domain's per-vnode actual size",
)
async def batch_report(
    host_id: str,
    body: AgentReportIn,
    request: Request,
    settings: SettingsDep,
    principal: Agent,
    now: Now,
) -> Response:
    # One request per host per interval, so one hop to the thread pool: the unit of work (with
    # its retries) and the migrations it moved on, each committed. Status only. Lapsed claims
    # are freed by the background sweeper, not here: at 1,000 reports a second a sweep per
    # report would cost more than it.
    def write(session: Session) -> AgentReportOut:
        out, moved_on = agent_report(session, host_id, body, now, settings, principal.actor)
        session.commit()
        for migration_id in sorted(moved_on):  # pool steps the report completed may clear a gate
            drive(session, migration_id, settings, now)
        return out

    return model_response(await run_db(request, write))


@router.get(
    "/steps",
    response_model=StepList,
    responses=responses(401, 403, 422),
    summary="Pending steps for this host, oldest first",
)
def steps(host_id: str, session: SessionDep, _: Agent) -> StepList:
    return core.pending_steps(session, host_id)


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
    return core.ack_step(session, host_id, step_id, body, settings, principal.actor, now)
