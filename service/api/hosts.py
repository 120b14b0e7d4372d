"""Hosts: registration with SLIT validation, listing, state changes, deletion, accounting."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import JSONResponse

from service.api.auth import Admin
from service.api.deps import Now, SettingsDep, run, run_operation
from service.api.etag import IfMatch, check_if_match, etag
from service.api.filters import ExternalIdQuery, LabelQuery, NameQuery, parse_labels
from service.api.ha import HaOvercommitQuery, overcommit
from service.api.idempotency import IdempotencyKey, create_once, created
from service.api.pagination import CursorQuery, LimitQuery, page_size
from service.api.problems import responses
from service.api.render import model_response
from service.core import hosts as core
from service.core import recovery
from service.core.idempotent import Reply
from service.core.rebalancing import rebalance_host
from service.core.squeezing import squeeze_host
from service.schemas.agent import AgentToken
from service.schemas.common import Page
from service.schemas.failover import FAIL_EXAMPLES, FailHost, RecoveryOut
from service.schemas.hosts import Accounting, HostCreate, HostCreated, HostOut, HostPatch
from service.schemas.migrations import (
    EVACUATE_EXAMPLES,
    EvacuateRequest,
    EvacuationOut,
    RebalanceOut,
    RebalanceRequest,
)
from service.schemas.squeeze import SqueezeRequest, SqueezeResult

router = APIRouter(prefix="/v1/hosts", tags=["hosts"])
HostId = Annotated[uuid.UUID, "host id"]


def _created(host: HostCreated) -> Reply:
    return created(host, f"/v1/hosts/{host.id}", ETag=etag(host.version))


def _with_etag(out: HostOut) -> Response:
    return model_response(out, {"ETag": etag(out.version)})


@router.post(
    "",
    status_code=201,
    response_model=HostCreated,
    responses=responses(401, 403, 409, 413, 422),
    summary="Register a host with its NUMA topology",
)
async def create_host(
    body: HostCreate,
    request: Request,
    principal: Admin,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    core.validate_topology(body)  # before the idempotency record: a bad body is never stored
    actor = principal.actor
    return await create_once(
        request, idempotency_key, body, actor, now, _created, core.register_host, body, actor, now
    )


@router.get("", response_model=Page[HostOut], responses=responses(401, 403, 422))
async def list_hosts(
    request: Request,
    settings: SettingsDep,
    _: Admin,
    name: NameQuery = None,
    external_id: ExternalIdQuery = None,
    label: LabelQuery = None,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> Response:
    page = await run(
        request,
        core.list_hosts,
        cursor,
        page_size(limit, settings),
        name=name,
        external_id=external_id,
        labels=parse_labels(label),
    )
    return model_response(page)


@router.get("/by-name/{name}", response_model=HostOut, responses=responses(401, 403, 404, 422))
async def get_host_by_name(name: str, request: Request, _: Admin) -> Response:
    return _with_etag(await run(request, core.read_host_by_name, name))


@router.get("/{host_id}", response_model=HostOut, responses=responses(401, 403, 404, 422))
async def get_host(host_id: uuid.UUID, request: Request, _: Admin) -> Response:
    return _with_etag(await run(request, core.read_host, str(host_id)))


@router.patch(
    "/{host_id}",
    response_model=HostOut,
    responses=responses(401, 403, 404, 409, 412, 422),
    summary="Change a host's state (active, maintenance, offline)",
)
async def patch_host(
    host_id: uuid.UUID,
    body: HostPatch,
    request: Request,
    principal: Admin,
    now: Now,
    if_match: IfMatch = None,
    ha_overcommit: HaOvercommitQuery = False,
) -> Response:
    out = await run(
        request,
        core.patch_host,
        str(host_id),
        body,
        principal.actor,
        lambda version: check_if_match(if_match, version),
        now,
        overcommit(principal, ha_overcommit),
    )
    return _with_etag(out)


@router.delete(
    "/{host_id}",
    status_code=204,
    responses=responses(401, 403, 404, 409, 412, 422),
    summary="Remove a host (refused while domains, claims or migrations use it)",
)
async def delete_host(
    host_id: uuid.UUID, request: Request, principal: Admin, now: Now, if_match: IfMatch = None
) -> Response:
    await run(
        request,
        core.remove_host,
        str(host_id),
        principal.actor,
        lambda version: check_if_match(if_match, version),
        now,
    )
    return Response(status_code=204)


@router.post(
    "/{host_id}/evacuate",
    status_code=202,
    response_model=EvacuationOut,
    responses=responses(401, 403, 404, 422),
    summary="Drain a host: maintenance, then a migration for each domain to the best other host.",
    description="""
Called by an orchestrator (admin token) before host maintenance. The host goes to `maintenance`
at once (it takes no new domain) and, for each of its domains, a migration to the best other
active host is started, each with its destination claims taken atomically (`migration.created`
events). A domain that fits nowhere stays, listed in `unplaced` with its reason. With
`auto_advance` every migration advances on its own as agents and guests complete the steps;
`GET /v1/hosts/{id}` shows `evacuation.domains_remaining` until the host is empty. Calling it
again starts migrations only for the domains not already leaving. `PATCH` the host back to
`active` to end the evacuation.
""",
)
async def evacuate(
    host_id: uuid.UUID,
    request: Request,
    settings: SettingsDep,
    principal: Admin,
    now: Now,
    body: Annotated[EvacuateRequest | None, Body(openapi_examples=EVACUATE_EXAMPLES)] = None,
) -> EvacuationOut:
    return await run_operation(
        request,
        core.evacuate_host,
        str(host_id),
        body or EvacuateRequest(),  # no body: the defaults
        principal.actor,
        settings,
        now,
    )


@router.post(
    "/{host_id}/agent-token",
    response_model=AgentToken,
    responses=responses(401, 403, 404, 422),
    summary="Rotate the host agent's token: the old one stops working at once",
)
async def rotate_agent_token(
    host_id: uuid.UUID, request: Request, principal: Admin, now: Now
) -> AgentToken:
    return await run(request, core.rotate_agent_token, str(host_id), principal.actor, now)


@router.post(
    "/{host_id}/squeeze",
    response_model=SqueezeResult,
    responses=responses(401, 403, 404, 409, 422),
    summary="Free memory per pnode or in total, or balance, by moving every domain's target",
)
async def post_squeeze(
    host_id: uuid.UUID,
    body: SqueezeRequest,
    request: Request,
    settings: SettingsDep,
    principal: Admin,
    now: Now,
) -> SqueezeResult:
    return await run(request, squeeze_host, str(host_id), body, principal.actor, settings, now)


@router.post(
    "/{host_id}/rebalance",
    response_model=RebalanceOut,
    responses=responses(401, 403, 404, 409, 422),
    summary="AutoNUMA: block moves within a MiB budget that bring memory where guests expect it",
)
async def post_rebalance(
    host_id: uuid.UUID, body: RebalanceRequest, request: Request, principal: Admin, now: Now
) -> RebalanceOut:
    return await run(request, rebalance_host, str(host_id), body, principal.actor, now)


@router.get(
    "/{host_id}/accounting",
    response_model=Accounting,
    responses=responses(401, 403, 404, 422),
    summary="Per-pnode capacity, allocated, claimed and free MiB, and every domain's backing",
)
async def get_accounting(host_id: uuid.UUID, request: Request, _: Admin, now: Now) -> Accounting:
    return await run(request, core.accounting, str(host_id), now)


@router.post(
    "/{host_id}/fail",
    response_model=RecoveryOut,
    responses=responses(401, 403, 404, 409, 422),
    summary="Declare a host failed: restart its protected domains on the plan's hosts",
)
async def fail_host(
    host_id: uuid.UUID,
    request: Request,
    principal: Admin,
    now: Now,
    body: Annotated[FailHost | None, Body(openapi_examples=FAIL_EXAMPLES)] = None,
) -> RecoveryOut:
    reason = (body or FailHost()).reason
    return await run(request, recovery.fail_host, str(host_id), reason, principal.actor, now)
