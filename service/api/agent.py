"""The host agent API: observed free memory per pnode, and the host's queue of steps.

An agent token is bound to one host; every route takes that host's id and refuses any other.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Request, Response

from service.api.auth import Agent
from service.api.deps import Now, SettingsDep, database, run, run_operation
from service.api.lean import lean_endpoint, optional_body, principal_for, required_body
from service.api.problems import responses
from service.api.render import model_response
from service.core import agent_report, leases
from service.core import agents as core
from service.schemas.agent import (
    LEASE_EXAMPLES,
    AckIn,
    AgentReportIn,
    AgentReportOut,
    LeaseIn,
    LeaseOut,
    ObservedIn,
    ObservedOut,
    StepList,
    StepOut,
)

router = APIRouter(prefix="/v1/agent/hosts/{host_id}", tags=["agent"])


async def _lease(request: Request) -> Response:
    """The lease route's lean handler (`api/lean.py`): the renewal is one statement, so the
    framework's per-request work was most of its cost. The usual renewal is awaited on the
    event loop (`leases.renew_on_loop`); anything else runs `leases.renew` in the thread pool."""
    principal = await principal_for(request)
    body = await optional_body(request, LeaseIn)
    app = request.app
    host_id = request.path_params["host_id"]
    seq = body.seq if body is not None else None
    now, settings, booted_at = app.state.clock(), app.state.settings, app.state.booted_at
    out = await leases.renew_on_loop(database(request), host_id, seq, now, settings, booted_at)
    if out is None:
        out = await run_operation(
            request, leases.renew, host_id, seq, now, settings, booted_at, principal.actor
        )
    return model_response(out)


@lean_endpoint(
    router,
    "/lease",
    _lease,
    method="PUT",
    plain_lookup=True,
    response_model=LeaseOut,
    responses=responses(401, 403, 404, 422),
    summary="Renew the host agent's lease; the answer says whether a full report is wanted",
)
async def renew_lease(
    host_id: str,
    request: Request,
    settings: SettingsDep,
    principal: Agent,
    now: Now,
    body: Annotated[LeaseIn | None, Body(openapi_examples=LEASE_EXAMPLES)] = None,
) -> Response:
    # The declaration (`lean_endpoint`): `_lease` serves the route.
    raise NotImplementedError  # pragma: no cover


@router.put(
    "/observed",
    response_model=ObservedOut,
    responses=responses(401, 403, 404, 422),
    summary="Report free MiB per pnode as the hypervisor sees it; large drift is flagged",
)
async def observed(
    host_id: str,
    body: ObservedIn,
    request: Request,
    settings: SettingsDep,
    principal: Agent,
    now: Now,
) -> ObservedOut:
    return await run_operation(
        request, core.record_observed, host_id, body, settings, principal.actor, now
    )


async def _report(request: Request) -> Response:
    """The batch report's lean handler (`api/lean.py`): one request per host per interval, and
    FastAPI's per-request work (dependencies, a second parse of a 5 KB body) was a third of a
    steady report's CPU. A settled report is answered on the event loop
    (`agent_report.settled_on_loop`); any other takes one hop to the thread pool for the unit
    of work (with its retries) and the migrations it moved on."""
    principal = await principal_for(request)
    body: AgentReportIn = await required_body(request)
    app = request.app
    host_id = request.path_params["host_id"]
    now, settings = app.state.clock(), app.state.settings
    out = await agent_report.settled_on_loop(database(request), host_id, body, now, settings)
    if out is None:
        out = await run_operation(
            request, core.batch_report, host_id, body, now, settings, principal.actor
        )
    return model_response(out)


@lean_endpoint(
    router,
    "/report",
    _report,
    method="POST",
    plain_lookup=True,
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
    # The declaration (`lean_endpoint`): `_report` serves the route.
    raise NotImplementedError  # pragma: no cover


@router.get(
    "/steps",
    response_model=StepList,
    responses=responses(401, 403, 422),
    summary="Pending steps for this host, oldest first",
)
async def steps(host_id: str, request: Request, _: Agent, now: Now) -> StepList:
    return await run(request, core.pending_steps, host_id, now)


@router.post(
    "/steps/{step_id}/ack",
    response_model=StepOut,
    responses=responses(401, 403, 404, 409, 422),
    summary="Acknowledge a step (ok) or report that it failed",
)
async def ack(
    host_id: str,
    step_id: uuid.UUID,
    body: AckIn,
    request: Request,
    settings: SettingsDep,
    principal: Agent,
    now: Now,
) -> StepOut:
    return await run_operation(
        request, core.ack_step, host_id, step_id, body, settings, principal.actor, now
    )
