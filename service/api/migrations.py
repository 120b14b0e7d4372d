"""Migrations between hosts with different NUMA topologies (toolstack)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from service.api.auth import Admin
from service.api.deps import Now, SessionDep, SettingsDep
from service.api.etag import etag
from service.api.idempotency import IdempotencyKey, idempotent_create
from service.api.pagination import CursorQuery, LimitQuery, next_cursor, page_size
from service.api.problems import responses
from service.core import migrations as core
from service.core.sweeper import sweep_migrations
from service.db.models import Migration
from service.db.pagination import fetch_page
from service.db.retry import retry_transaction
from service.schemas.common import Page
from service.schemas.migrations import (
    ABORT_EXAMPLES,
    AbortRequest,
    MigrationOut,
    MigrationRequest,
    PlanOut,
)
from service.settings import Settings
from service.vocabulary import MigrationState

router = APIRouter(prefix="/v1/migrations", tags=["migrations"])


def _out(
    session: SessionDep, migration: Migration, now: datetime, settings: Settings
) -> MigrationOut:
    claims = core.claims_of(session, [migration.id], now)[migration.id]
    return core.migration_out(migration, claims, now, settings)


@router.post(
    "/plan",
    response_model=PlanOut,
    responses=responses(401, 403, 404, 409, 422),
    summary="Plan a migration (dry run): mapping, pool levels, ordered steps; nothing reserved",
)
def plan(body: MigrationRequest, session: SessionDep, _: Admin) -> PlanOut:
    domain, src, dst, engine_plan = core.compute_plan(session, body, lock=False)
    return core.plan_out(domain, src, dst, engine_plan)


@router.post(
    "",
    status_code=201,
    response_model=MigrationOut,
    responses=responses(401, 403, 404, 409, 413, 422),
    summary="Start a migration: claim destination memory per pnode atomically, or 409",
)
@retry_transaction
def start(
    body: MigrationRequest,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Admin,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    # Lapsed claims are freed first, in transactions of their own: they lock other hosts than
    # this request's, and one transaction taking both sets could deadlock with another.
    sweep_migrations(request.app.state.sessionmaker, now, settings)

    def create() -> tuple[int, dict[str, Any], dict[str, str]]:
        migration = core.start(session, body, principal.actor, settings, now)
        out = _out(session, migration, now, settings)
        return (
            201,
            out.model_dump(mode="json"),
            {"Location": f"/v1/migrations/{migration.id}", "ETag": etag(migration.version)},
        )

    response = idempotent_create(
        session, request, settings, principal.actor, idempotency_key, body, create, now
    )
    if body.auto_advance and response.status_code == 201:
        # planned -> preparing (and on, while no step blocks) right away, after the create
        # committed; the orchestrator watches GET /v1/events?subject_id=<id>&wait=...
        core.drive(session, json.loads(bytes(response.body))["id"], settings, now)
    return response


@router.get("", response_model=Page[MigrationOut], responses=responses(401, 403, 422))
def list_migrations(
    session: SessionDep,
    settings: SettingsDep,
    _: Admin,
    now: Now,
    domain_id: Annotated[uuid.UUID | None, Query()] = None,
    state: Annotated[MigrationState | None, Query()] = None,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> Page[MigrationOut]:
    stmt = select(Migration).options(selectinload(Migration.steps))
    if domain_id is not None:
        stmt = stmt.where(Migration.domain_id == str(domain_id))
    if state is not None:
        stmt = stmt.where(Migration.state == state)
    page, more = fetch_page(
        session, stmt, Migration.created_at, Migration.id, cursor, page_size(limit, settings)
    )
    claims = core.claims_of(session, [m.id for m in page], now)
    return Page[MigrationOut](
        items=[core.migration_out(m, claims[m.id], now, settings) for m in page],
        next_cursor=next_cursor(page, more),
    )


@router.get("/{migration_id}", response_model=MigrationOut, responses=responses(401, 403, 404, 422))
def get_migration(
    migration_id: uuid.UUID, session: SessionDep, settings: SettingsDep, _: Admin, now: Now
) -> MigrationOut:
    return _out(session, core.load_migration(session, str(migration_id)), now, settings)


@router.post(
    "/{migration_id}/advance",
    response_model=MigrationOut,
    responses=responses(401, 403, 404, 409, 422),
    summary="Move to the next phase once the current phase's steps are acknowledged",
)
@retry_transaction
def advance(
    migration_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    principal: Admin,
    now: Now,
) -> MigrationOut:
    migration = core.advance(session, str(migration_id), principal.actor, settings, now)
    out = _out(session, migration, now, settings)
    session.commit()
    return out


@router.post(
    "/{migration_id}/abort",
    response_model=MigrationOut,
    responses=responses(401, 403, 404, 409, 422),
    summary="Abort: release the claims and restore the source pools, or record where it runs",
)
@retry_transaction
def abort(
    migration_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    principal: Admin,
    now: Now,
    body: Annotated[AbortRequest | None, Body(openapi_examples=ABORT_EXAMPLES)] = None,
) -> MigrationOut:
    runs_on = body.runs_on if body is not None else None
    migration = core.abort(session, str(migration_id), principal.actor, now, runs_on)
    out = _out(session, migration, now, settings)
    session.commit()
    return out
