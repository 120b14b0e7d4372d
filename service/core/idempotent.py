"""A create under an optional Idempotency-Key, inside the caller's unit of work.

With a key, the create first takes the (actor, key) lock for its transaction (PostgreSQL: an
advisory lock; see `service.db.idempotency`), so a retry running at the same time waits for the
first to commit and then replays its response. The create and its record are written in the
same unit and commit together (`service.core.unit`), or not at all. A replay writes nothing:
its unit is discarded (rolled back, which ends the lock as a commit would).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from service.core import unit
from service.db import idempotency
from service.db.idempotency import StoredResponse
from service.errors import InvalidInput

Reply = StoredResponse
__all__ = ["CreateRequest", "Outcome", "Reply", "create"]


@dataclass(frozen=True)
class CreateRequest:
    """Who asks to create what: the key (None: no key, the create simply runs), the request it
    came with (method, path and body, as one hash) and how long a replay stays possible."""

    actor: str
    key: str | None
    method: str
    path: str
    payload: Any
    ttl_s: float
    now: datetime


@dataclass(frozen=True)
class Outcome:
    reply: Reply
    replayed: bool


def _key_reused() -> InvalidInput:
    return InvalidInput(
        "this Idempotency-Key was already used with a different request body",
        errors=[{"loc": ["header", "Idempotency-Key"], "msg": "key reused with another body"}],
    )


def create(session: Session, request: CreateRequest, make: Callable[[Session], Reply]) -> Outcome:
    """Create once per key: `make` runs unless a record of this key answers for it; its reply
    is recorded (secrets sealed) in the same unit."""
    if request.key is None:
        return Outcome(make(session), replayed=False)
    actor, key, now = request.actor, request.key, request.now
    req_hash = idempotency.request_hash(request.method, request.path, request.payload)
    idempotency.lock_key(session, actor, key)
    try:
        stored = idempotency.lookup(session, actor, key, req_hash, now)
    except idempotency.KeyReused:
        raise _key_reused() from None
    if stored is not None:
        unit.discard(session)
        return Outcome(stored, replayed=True)
    reply = make(session)
    idempotency.store(
        session, actor, key, request.method, request.path, req_hash, reply, request.ttl_s, now
    )
    return Outcome(reply, replayed=False)
