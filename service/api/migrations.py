"""Migrations between hosts with different NUMA topologies (toolstack)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import JSONResponse

from service.api.auth import Admin
from service.api.deps import Now, SettingsDep, run, run_operation
from service.api.etag import etag
from service.api.ha import HaOvercommitQuery, overcommit
from service.api.idempotency import IdempotencyKey, create_request, created, respond
from service.api.pagination import CursorQuery, LimitQuery, page_size
from service.api.problems import responses
from service.api.render import model_response
from service.core import migration_requests as core
from service.core.idempotent import Reply
from service.schemas.common import Page
from service.schemas.migrations import (
    ABORT_EXAMPLES,
    AbortRequest,
    MigrationOut,
    MigrationRequest,
    PlanOut,
)
from service.vocabulary import MigrationState

router = APIRouter(prefix="/v1/migrations", tags=["migrations"])


def _created(migration: MigrationOut) -> Reply:
    return created(migration, f"/v1/migrations/{migration.id}", ETag=etag(migration.version))


@router.post(
    "/plan",
    response_model=PlanOut,
    responses=responses(401, 403, 404, 409, 422),
    summary="Plan a migration (dry run): mapping, pool levels, ordered steps; nothing reserved",
)
async def plan(body: MigrationRequest, request: Request, _: Admin, now: Now) -> PlanOut:
    return await run(request, core.plan, body, now)


@router.post(
    "",
    status_code=201,
    response_model=MigrationOut,
    responses=responses(401, 403, 404, 409, 413, 422),
    summary="Start a migration: claim destination memory per pnode atomically, or 409",
)
async def start(
    body: MigrationRequest,
    request: Request,
    settings: SettingsDep,
    principal: Admin,
    now: Now,
    idempotency_key: IdempotencyKey = None,
    ha_overcommit: HaOvercommitQuery = False,
) -> JSONResponse:
    actor = principal.actor
    ha = overcommit(principal, ha_overcommit)
    create = create_request(request, idempotency_key, body, actor, now)
    outcome = await run_operation(
        request, core.start, create, body, actor, settings, now, _created, ha
    )
    return respond(outcome)


@router.get("", response_model=Page[MigrationOut], responses=responses(401, 403, 422))
async def list_migrations(
    request: Request,
    settings: SettingsDep,
    _: Admin,
    now: Now,
    domain_id: Annotated[uuid.UUID | None, Query()] = None,
    state: Annotated[MigrationState | None, Query()] = None,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> Response:
    page = await run(
        request,
        core.list_page,
        cursor,
        page_size(limit, settings),
        now,
        settings,
        domain_id=None if domain_id is None else str(domain_id),
        state=state,
    )
    return model_response(page)


@router.get("/{migration_id}", response_model=MigrationOut, responses=responses(401, 403, 404, 422))
async def get_migration(
    migration_id: uuid.UUID, request: Request, settings: SettingsDep, _: Admin, now: Now
) -> Response:
    return model_response(await run(request, core.read, str(migration_id), now, settings))


@router.post(
    "/{migration_id}/advance",
    response_model=MigrationOut,
    responses=responses(401, 403, 404, 409, 422),
    summary="Move to the next phase once the current phase's steps are acknowledged",
)
async def advance(
    migration_id: uuid.UUID,
    request: Request,
    settings: SettingsDep,
    principal: Admin,
    now: Now,
) -> Response:
    out = await run(request, core.advance, str(migration_id), principal.actor, settings, now)
    return model_response(out)


@router.post(
    "/{migration_id}/abort",
    response_model=MigrationOut,
    responses=responses(401, 403, 404, 409, 422),
    summary="Abort: release the claims and restore the source pools, or record where it runs",
)
async def abort(
    migration_id: uuid.UUID,
    request: Request,
    settings: SettingsDep,
    principal: Admin,
    now: Now,
    body: Annotated[AbortRequest | None, Body(openapi_examples=ABORT_EXAMPLES)] = None,
) -> Response:
    runs_on = body.runs_on if body is not None else None
    out = await run(request, core.abort, str(migration_id), principal.actor, settings, now, runs_on)
    return model_response(out)
