"""Creates under an optional Idempotency-Key: the header, and the HTTP side of
`service.core.idempotent` (which runs inside the create's unit of work)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Concatenate, ParamSpec, TypeVar

from fastapi import Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from service.api.deps import run
from service.core import idempotent
from service.core.idempotent import CreateRequest, Outcome, Reply

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

P = ParamSpec("P")
M = TypeVar("M")


def create_request(
    request: Request, key: str | None, body: BaseModel, actor: str, now: datetime
) -> CreateRequest:
    """The create as the idempotency record knows it: who, which key, which request."""
    return CreateRequest(
        actor=actor,
        key=key,
        method=request.method,
        path=request.url.path,
        payload=body.model_dump(mode="json"),
        ttl_s=request.app.state.settings.idempotency_ttl_s,
        now=now,
    )


def respond(outcome: Outcome) -> JSONResponse:
    """The create's response, or the first one's replayed (marked so)."""
    reply = outcome.reply
    headers = (
        {**reply.headers, "Idempotent-Replayed": "true"} if outcome.replayed else reply.headers
    )
    return JSONResponse(reply.body, status_code=reply.status_code, headers=headers)


async def create_once(
    request: Request,
    key: str | None,
    body: BaseModel,
    actor: str,
    now: datetime,
    shape: Callable[[M], Reply],
    op: Callable[Concatenate[Session, P], M],
    *args: P.args,
    **kwargs: P.kwargs,
) -> JSONResponse:
    """The POST that creates `body` with core operation `op`, once per Idempotency-Key, in one
    unit of work; `shape` turns what `op` made into the reply (status, body, headers)."""

    def make(session: Session) -> Reply:
        return shape(op(session, *args, **kwargs))

    create = create_request(request, key, body, actor, now)
    return respond(await run(request, idempotent.create, create, make))


def created(model: BaseModel, location: str, **headers: str) -> Reply:
    """A 201 with its Location (and e.g. the ETag) for `model`, as a create's reply."""
    return Reply(201, model.model_dump(mode="json"), {"Location": location, **headers})
