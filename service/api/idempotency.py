"""Run a create under an optional Idempotency-Key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
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
        description="Retry-safe create: the same key and body return the first response",
    ),
]

Create = Callable[[], tuple[int, dict[str, Any], dict[str, str]]]


def _replay(stored: idempotency.StoredResponse) -> JSONResponse:
    return JSONResponse(
        stored.body, status_code=stored.status_code, headers={"Idempotent-Replayed": "true"}
    )


def idempotent_create(
    session: Session,
    request: Request,
    settings: Settings,
    actor: str,
    key: str | None,
    body: BaseModel,
    create: Create,
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
) -> JSONResponse:
    """Create once per key: commit the result and the idempotency record together."""
    if key is None:
        status, body, headers = create()
        session.commit()
        return JSONResponse(body, status_code=status, headers=headers)

    req_hash = idempotency.request_hash(method, path, payload)
    try:
        stored = idempotency.lookup(session, actor, key, req_hash)
    except idempotency.KeyReused:
        raise InvalidInput(
            "this Idempotency-Key was already used with a different request body",
            errors=[{"loc": ["header", "Idempotency-Key"], "msg": "key reused with another body"}],
        ) from None
    if stored is not None:
        return _replay(stored)

    try:
        # A concurrent twin with the same key blocks on our inserts (unique name, unique key)
        # until it commits, then fails here: it replays the twin's stored response.
        status, body, headers = create()
        idempotency.store(session, actor, key, method, path, req_hash, status, body, ttl_s)
        session.commit()
    except IntegrityError:
        session.rollback()
        try:
            stored = idempotency.lookup(session, actor, key, req_hash)
        except idempotency.KeyReused:
            raise InvalidInput(
                "this Idempotency-Key was already used with a different request body",
                errors=[
                    {"loc": ["header", "Idempotency-Key"], "msg": "key reused with another body"}
                ],
            ) from None
        session.rollback()
        if stored is not None:
            return _replay(stored)
        raise
    return JSONResponse(body, status_code=status, headers=headers)
