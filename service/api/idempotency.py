"""Run a create under an optional Idempotency-Key."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from service.api.problems import InvalidInput
from service.db import idempotency
from service.settings import Settings

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Retry-safe create: the same key and body return the first response, the "
        "secret it showed included (kept sealed under this key for the idempotency window; use "
        "a random key such as a UUID)",
    ),
]

Create = Callable[[], tuple[int, dict[str, Any], dict[str, str]]]


def _replay(stored: idempotency.StoredResponse) -> JSONResponse:
    headers = {**stored.headers, "Idempotent-Replayed": "true"}
    return JSONResponse(stored.body, status_code=stored.status_code, headers=headers)


def _key_reused() -> InvalidInput:
    return InvalidInput(
        "this Idempotency-Key was already used with a different request body",
        errors=[{"loc": ["header", "Idempotency-Key"], "msg": "key reused with another body"}],
    )


def idempotent_create(
    session: Session,
    request: Request,
    settings: Settings,
    actor: str,
    key: str | None,
    body: BaseModel,
    create: Create,
    now: datetime,
) -> JSONResponse:
    """The POST that creates `body`, once per Idempotency-Key (see `run_create`)."""
    return run_create(
        session,
        actor=actor,
        key=key,
        method=request.method,
        path=request.url.path,
        payload=body.model_dump(mode="json"),
        ttl_s=settings.idempotency_ttl_s,
        create=create,
        now=now,
    )


def run_create(
    session: Session,
    *,
    actor: str,
    key: str | None,
    method: str,
    path: str,
    payload: Any,
    ttl_s: float,
    create: Create,
    now: datetime,
) -> JSONResponse:
    """Create once per key: commit the result and the idempotency record together. A retry
    running at the same time waits on the key's lock, then replays the first one's response."""
    if key is None:
        status, body, headers = create()
        session.commit()
        return JSONResponse(body, status_code=status, headers=headers)

    req_hash = idempotency.request_hash(method, path, payload)
    idempotency.lock_key(session, actor, key)
    try:
        stored = idempotency.lookup(session, actor, key, req_hash, now)
    except idempotency.KeyReused:
        raise _key_reused() from None
    if stored is not None:
        return _replay(stored)

    status, body, headers = create()
    response = idempotency.StoredResponse(status, body, headers)
    idempotency.store(session, actor, key, method, path, req_hash, response, ttl_s, now)
    session.commit()
    return JSONResponse(body, status_code=status, headers=headers)
