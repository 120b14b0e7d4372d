"""Idempotency-Key storage (IETF httpapi idempotency-key draft).

Same key and same body replay the stored response, secrets included; the same key with another
body is a 422. A create under a key first takes a lock on (actor, key) for its transaction
(PostgreSQL: an advisory lock; SQLite: every writer holds the database lock already), so a
concurrent retry waits for the first to commit and then finds its record: it replays it instead
of running the create again and meeting "name exists". The record is inserted in the creating
transaction, so the create and its record commit together or not at all.

Secrets are not stored in clear: they are sealed under the Idempotency-Key, which is stored only
as a digest (service/db/sealed.py), and records are deleted when their window ends.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from service.db.models import IdempotencyRecord
from service.db.sealed import seal, unseal

# The fields of a create's response that hold a secret shown once: sealed, never in clear.
SECRET_FIELDS = ("agent_token", "guest_token", "secret")
# Headers a replay repeats (the rest are the transport's or the middleware's).
REPLAYED_HEADERS = ("Location", "ETag", "Cache-Control")


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class KeyReused(Exception):
    """The key was used before with a different request body."""


def request_hash(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _context(actor: str, req_hash: str) -> str:
    """What a sealed value is bound to: who asked for what (method, path and body digest)."""
    return f"{actor}\n{req_hash}"


def lock_key(session: Session, actor: str, key: str) -> None:
    """Serialize the creates of one (actor, key) until the transaction ends. PostgreSQL only:
    on SQLite each write transaction already holds the database's write lock."""
    if session.get_bind().dialect.name != "postgresql":
        return
    ident = int.from_bytes(
        hashlib.sha256(f"{actor}\n{key}".encode()).digest()[:8], "big", signed=True
    )
    session.execute(select(func.pg_advisory_xact_lock(ident)))


def lookup(
    session: Session, actor: str, key: str, req_hash: str, now: datetime
) -> StoredResponse | None:
    record = session.scalars(
        select(IdempotencyRecord).where(
            IdempotencyRecord.actor == actor,
            IdempotencyRecord.key_digest == key_digest(key),
            IdempotencyRecord.expires_at > now,
        )
    ).first()
    if record is None:
        return None
    if record.request_hash != req_hash:
        raise KeyReused(key)
    body = dict(record.response_body)
    if record.sealed_secrets is not None:
        body.update(unseal(key, _context(actor, req_hash), record.sealed_secrets))
    return StoredResponse(record.status_code, body, dict(record.response_headers or {}))


def store(
    session: Session,
    actor: str,
    key: str,
    method: str,
    path: str,
    req_hash: str,
    response: StoredResponse,
    ttl_s: float,
    now: datetime,
) -> None:
    digest = key_digest(key)
    # An expired record with the same key would block the insert; it no longer means anything.
    session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.actor == actor,
            IdempotencyRecord.key_digest == digest,
            IdempotencyRecord.expires_at <= now,
        )
    )
    secrets = {k: v for k, v in response.body.items() if k in SECRET_FIELDS and v is not None}
    headers = {k: v for k, v in response.headers.items() if k in REPLAYED_HEADERS}
    if secrets:
        headers["Cache-Control"] = "no-store"  # a replay shows the secret again: keep it out
    session.add(
        IdempotencyRecord(
            actor=actor,
            key_digest=digest,
            method=method,
            path=path[:255],
            request_hash=req_hash,
            status_code=response.status_code,
            response_body={k: (None if k in secrets else v) for k, v in response.body.items()},
            response_headers=headers,
            sealed_secrets=seal(key, _context(actor, req_hash), secrets) if secrets else None,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
        )
    )


def purge_expired(session: Session, now: datetime) -> int:
    """Delete the records whose window ended (their sealed secrets with them)."""
    result = session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= now))
    return int(getattr(result, "rowcount", 0) or 0)
