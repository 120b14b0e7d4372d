"""API keys (admin only): create (the secret is shown once), list, get, revoke, rotate."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from service.api.auth import Caller
from service.api.deps import Now, SessionDep, SettingsDep
from service.api.idempotency import IdempotencyKey, idempotent_create
from service.api.pagination import CursorQuery, LimitQuery, next_cursor, page_size
from service.api.problems import responses
from service.core import api_keys as core
from service.schemas.api_keys import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from service.schemas.common import Page

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])


def _created(key: core.ApiKey, secret: str) -> ApiKeyCreated:
    return ApiKeyCreated(**core.key_out(key).model_dump(), secret=secret)


@router.post(
    "",
    status_code=201,
    response_model=ApiKeyCreated,
    responses=responses(401, 403, 409, 422, 429),
    summary="Create a named key with one role; its secret is in this response only",
)
def create_api_key(
    body: ApiKeyCreate,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Caller,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    def create() -> tuple[int, dict[str, Any], dict[str, str]]:
        key, secret = core.create_key(session, body, principal.actor, now)
        return (
            201,
            _created(key, secret).model_dump(mode="json"),
            {"Location": f"/v1/api-keys/{key.id}", "Cache-Control": "no-store"},
        )

    return idempotent_create(
        session, request, settings, principal.actor, idempotency_key, body, create, now
    )


@router.get("", response_model=Page[ApiKeyOut], responses=responses(401, 403, 422, 429))
def list_api_keys(
    session: SessionDep,
    settings: SettingsDep,
    _: Caller,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> Page[ApiKeyOut]:
    rows, more = core.list_keys(session, cursor, page_size(limit, settings))
    return Page[ApiKeyOut](
        items=[core.key_out(k) for k in rows], next_cursor=next_cursor(rows, more)
    )


@router.get("/{key_id}", response_model=ApiKeyOut, responses=responses(401, 403, 404, 422, 429))
def get_api_key(key_id: uuid.UUID, session: SessionDep, _: Caller) -> ApiKeyOut:
    return core.key_out(core.get_key(session, str(key_id)))


@router.delete(
    "/{key_id}",
    status_code=204,
    responses=responses(401, 403, 404, 422, 429),
    summary="Revoke a key: it stops working on the next request, on every replica",
)
def revoke_api_key(key_id: uuid.UUID, session: SessionDep, principal: Caller, now: Now) -> Response:
    core.revoke_key(session, str(key_id), principal.actor, now)
    session.commit()
    return Response(status_code=204)


@router.post(
    "/{key_id}/rotate",
    response_model=ApiKeyCreated,
    responses=responses(401, 403, 404, 409, 422, 429),
    summary="Replace a key's secret (same name and role); the old secret stops working now",
)
def rotate_api_key(
    key_id: uuid.UUID, session: SessionDep, principal: Caller, now: Now
) -> JSONResponse:
    key, secret = core.rotate_key(session, str(key_id), principal.actor, now)
    out = _created(key, secret)
    session.commit()
    return JSONResponse(out.model_dump(mode="json"), headers={"Cache-Control": "no-store"})
