"""Hosts: registration with SLIT validation, listing, state changes, deletion, accounting."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from service.api.auth import Admin
from service.api.deps import Now, SessionDep, SettingsDep, run_db
from service.api.etag import IfMatch, check_if_match, etag
from service.api.filters import ExternalIdQuery, LabelQuery, NameQuery, parse_labels
from service.api.idempotency import IdempotencyKey, idempotent_create
from service.api.pagination import CursorQuery, LimitQuery, page_size
from service.api.problems import responses
from service.api.render import model_response
from service.core import hosts as core
from service.core.rebalancing import rebalance_host
from service.core.squeezing import squeeze_host
from service.db.retry import retry_transaction
from service.schemas.agent import AgentToken
from service.schemas.common import Page
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


@router.post(
    "",
    status_code=201,
    response_model=HostCreated,
    responses=responses(401, 403, 409, 413, 422),
    summary="Register a host with its NUMA topology",
)
def create_host(
    body: HostCreate,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Admin,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    core.validate_topology(body)  # before the idempotency record: a bad body is never stored

    def create() -> tuple[int, dict[str, Any], dict[str, str]]:
        created = core.register_host(session, body, principal.actor)
        return (
            201,
            created.model_dump(mode="json"),
            {"Location": f"/v1/hosts/{created.id}", "ETag": etag(created.version)},
        )

    return idempotent_create(
        session, request, settings, principal.actor, idempotency_key, body, create, now
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
    labels, size = parse_labels(label), page_size(limit, settings)

    def read(session: Session) -> Page[HostOut]:
        return core.list_hosts(
            session, cursor, size, name=name, external_id=external_id, labels=labels
        )

    return model_response(await run_db(request, read))


@router.get("/by-name/{name}", response_model=HostOut, responses=responses(401, 403, 404, 422))
def get_host_by_name(name: str, response: Response, session: SessionDep, _: Admin) -> HostOut:
    host = core.get_host_by_name(session, name)
    response.headers["ETag"] = etag(host.version)
    return core.host_view(session, host)


@router.get("/{host_id}", response_model=HostOut, responses=responses(401, 403, 404, 422))
def get_host(host_id: uuid.UUID, response: Response, session: SessionDep, _: Admin) -> HostOut:
    host = core.get_host(session, str(host_id))
    response.headers["ETag"] = etag(host.version)
    return core.host_view(session, host)


@router.patch(
    "/{host_id}",
    response_model=HostOut,
    responses=responses(401, 403, 404, 412, 422),
    summary="Change a host's state (active, maintenance, offline)",
)
@retry_transaction
def patch_host(
    host_id: uuid.UUID,
    body: HostPatch,
    response: Response,
    session: SessionDep,
    principal: Admin,
    if_match: IfMatch = None,
) -> HostOut:
    host = core.get_host(session, str(host_id), lock=True)
    check_if_match(if_match, host.version)
    out = core.change_host(session, host, body, principal.actor)
    session.commit()
    response.headers["ETag"] = etag(out.version)
    return out


@router.delete(
    "/{host_id}",
    status_code=204,
    responses=responses(401, 403, 404, 409, 412, 422),
    summary="Remove a host (refused while domains, claims or migrations use it)",
)
@retry_transaction
def delete_host(
    host_id: uuid.UUID, session: SessionDep, principal: Admin, if_match: IfMatch = None
) -> Response:
    host = core.get_host(session, str(host_id), lock=True)
    check_if_match(if_match, host.version)
    core.delete_host(session, host, principal.actor)
    session.commit()
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
@retry_transaction
def evacuate(
    host_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Admin,
    now: Now,
    body: Annotated[EvacuateRequest | None, Body(openapi_examples=EVACUATE_EXAMPLES)] = None,
) -> EvacuationOut:
    return core.evacuate_host(
        session,
        request.app.state.sessionmaker,
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
def rotate_agent_token(host_id: uuid.UUID, session: SessionDep, principal: Admin) -> AgentToken:
    out = core.rotate_agent_token(session, str(host_id), principal.actor)
    session.commit()
    return out


@router.post(
    "/{host_id}/squeeze",
    response_model=SqueezeResult,
    responses=responses(401, 403, 404, 409, 422),
    summary="Free memory per pnode or in total, or balance, by moving every domain's target",
)
@retry_transaction
def post_squeeze(
    host_id: uuid.UUID,
    body: SqueezeRequest,
    session: SessionDep,
    settings: SettingsDep,
    principal: Admin,
    now: Now,
) -> SqueezeResult:
    result = squeeze_host(session, str(host_id), body, principal.actor, settings, now)
    if not body.dry_run:
        session.commit()
    return result


@router.post(
    "/{host_id}/rebalance",
    response_model=RebalanceOut,
    responses=responses(401, 403, 404, 409, 422),
    summary="AutoNUMA: block moves within a MiB budget that bring memory where guests expect it",
)
@retry_transaction
def post_rebalance(
    host_id: uuid.UUID, body: RebalanceRequest, session: SessionDep, principal: Admin, now: Now
) -> RebalanceOut:
    result = rebalance_host(session, str(host_id), body, principal.actor, now)
    if not body.dry_run:
        session.commit()
    return result


@router.get(
    "/{host_id}/accounting",
    response_model=Accounting,
    responses=responses(401, 403, 404, 422),
    summary="Per-pnode capacity, allocated, claimed and free MiB, and every domain's backing",
)
def get_accounting(host_id: uuid.UUID, session: SessionDep, _: Admin, now: Now) -> Accounting:
    return core.accounting(session, str(host_id), now)
