"""API keys (admin only): create (the secret is shown once), list, get, revoke, rotate."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from service.api.auth import Caller
from service.api.deps import Now, SettingsDep, run
from service.api.idempotency import IdempotencyKey, create_once, created
from service.api.pagination import CursorQuery, LimitQuery, page_size
from service.api.problems import responses
from service.api.render import model_response
from service.core import api_keys as core
from service.core.idempotent import Reply
from service.schemas.api_keys import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from service.schemas.common import Page

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])
NO_STORE = {"Cache-Control": "no-store"}


def _created(key: ApiKeyCreated) -> Reply:
    return created(key, f"/v1/api-keys/{key.id}", **NO_STORE)


@router.post(
    "",
    status_code=201,
    response_model=ApiKeyCreated,
    responses=responses(401, 403, 409, 422, 429),
    summary="Create a named key with one role; its secret is in this response only",
)
async def create_api_key(
    body: ApiKeyCreate,
    request: Request,
    principal: Caller,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    actor = principal.actor
    return await create_once(
        request, idempotency_key, body, actor, now, _created, core.new_key, body, actor, now
    )


@router.get("", response_model=Page[ApiKeyOut], responses=responses(401, 403, 422, 429))
async def list_api_keys(
    request: Request,
    settings: SettingsDep,
    _: Caller,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> Response:
    return model_response(await run(request, core.key_page, cursor, page_size(limit, settings)))


@router.get("/{key_id}", response_model=ApiKeyOut, responses=responses(401, 403, 404, 422, 429))
async def get_api_key(key_id: uuid.UUID, request: Request, _: Caller) -> ApiKeyOut:
    return await run(request, core.read_key, str(key_id))


@router.delete(
    "/{key_id}",
    status_code=204,
    responses=responses(401, 403, 404, 422, 429),
    summary="Revoke a key: it stops working on the next request, on every replica",
)
async def revoke_api_key(
    key_id: uuid.UUID, request: Request, principal: Caller, now: Now
) -> Response:
    await run(request, core.revoke_key, str(key_id), principal.actor, now)
    return Response(status_code=204)


@router.post(
    "/{key_id}/rotate",
    response_model=ApiKeyCreated,
    responses=responses(401, 403, 404, 409, 422, 429),
    summary="Replace a key's secret (same name and role); the old secret stops working now",
)
async def rotate_api_key(
    key_id: uuid.UUID, request: Request, principal: Caller, now: Now
) -> JSONResponse:
    out = await run(request, core.rotated_key, str(key_id), principal.actor, now)
    return JSONResponse(out.model_dump(mode="json"), headers=NO_STORE)
