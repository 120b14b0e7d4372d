"""Idempotency-Key storage (IETF httpapi idempotency-key draft).

Same key and same body replay the stored response; the same key with another body is a 422. The
record is inserted in the creating transaction, so two racing requests with one key cannot both
commit: the loser's unique-key violation becomes a replay of the winner's response.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.db.base import utcnow
from service.db.models import IdempotencyRecord

# Fields never stored in a replayable response: secrets are shown once.
SECRET_FIELDS = ("agent_token", "guest_token")


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: dict[str, Any]


class KeyReused(Exception):
    """The key was used before with a different request body."""


def request_hash(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def lookup(session: Session, actor: str, key: str, req_hash: str) -> StoredResponse | None:
    record = session.scalars(
        select(IdempotencyRecord).where(
            IdempotencyRecord.actor == actor,
            IdempotencyRecord.key == key,
            IdempotencyRecord.expires_at > utcnow(),
        )
    ).first()
    if record is None:
        return None
    if record.request_hash != req_hash:
        raise KeyReused(key)
    return StoredResponse(record.status_code, record.response_body)


def store(
    session: Session,
    actor: str,
    key: str,
    method: str,
    path: str,
    req_hash: str,
    status_code: int,
    body: dict[str, Any],
    ttl_s: float,
) -> None:
    now = utcnow()
    # An expired record with the same key would block the insert; it no longer means anything.
    session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.actor == actor,
            IdempotencyRecord.key == key,
            IdempotencyRecord.expires_at <= now,
        )
    )
    redacted = {k: (None if k in SECRET_FIELDS else v) for k, v in body.items()}
    session.add(
        IdempotencyRecord(
            actor=actor,
            key=key,
            method=method,
            path=path[:255],
            request_hash=req_hash,
            status_code=status_code,
            response_body=redacted,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
        )
    )
