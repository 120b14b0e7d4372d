"""Named API keys: create, list, get, revoke, rotate, and resolve a secret to its key.

A key's secret is `nbk_` + 256 random bits, shown once; the row keeps its SHA-256 digest (a fast
digest suffices: there is nothing to brute-force in 256 random bits), so a secret is found by one
indexed equality lookup. Nothing is cached: a revocation or an expiry takes effect on the next
request, on every replica.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.audit import record_event
from service.db.models import ApiKey
from service.db.pagination import fetch_page, next_cursor
from service.errors import Conflict, InvalidInput, NotFound, Unauthorized
from service.schemas.api_keys import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, Role
from service.schemas.common import Page

__all__ = [
    "ApiKey",
    "create_key",
    "get_key",
    "key_out",
    "key_page",
    "list_keys",
    "new_key",
    "read_key",
    "resolve_key",
    "revoke_key",
    "rotate_key",
    "rotated_key",
]

KEY_PREFIX = "nbk_"


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ResolvedKey:
    id: str
    name: str
    role: Role
    secret_hash: str


def key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut.model_validate(key, from_attributes=True)


def create_key(
    session: Session, body: ApiKeyCreate, actor: str, now: datetime
) -> tuple[ApiKey, str]:
    """A new key and its secret (the only time the secret exists outside the caller)."""
    if body.expires_at is not None and body.expires_at <= now:
        raise InvalidInput(
            "expires_at is in the past",
            errors=[{"loc": ["body", "expires_at"], "msg": "must be in the future"}],
        )
    if session.scalar(select(ApiKey.id).where(ApiKey.name == body.name)) is not None:
        raise Conflict(f"a key named {body.name!r} exists (names stay taken after revocation)")
    secret = new_secret()
    key = ApiKey(
        name=body.name,
        role=body.role,
        secret_hash=secret_digest(secret),
        created_by=actor,
        created_at=now,
        expires_at=body.expires_at,
    )
    session.add(key)
    session.flush()
    record_event(
        session,
        actor,
        "api_key.created",
        "api_key",
        key.id,
        after={"name": key.name, "role": key.role, "expires_at": _iso(key.expires_at)},
        at=now,
    )
    return key, secret


def created_out(key: ApiKey, secret: str) -> ApiKeyCreated:
    """The key with its secret: the only response that shows it."""
    return ApiKeyCreated(**key_out(key).model_dump(), secret=secret)


def new_key(session: Session, body: ApiKeyCreate, actor: str, now: datetime) -> ApiKeyCreated:
    return created_out(*create_key(session, body, actor, now))


def key_page(session: Session, cursor: str | None, limit: int) -> Page[ApiKeyOut]:
    rows, more = list_keys(session, cursor, limit)
    return Page[ApiKeyOut](items=[key_out(k) for k in rows], next_cursor=next_cursor(rows, more))


def read_key(session: Session, key_id: str) -> ApiKeyOut:
    return key_out(get_key(session, key_id))


def list_keys(session: Session, cursor: str | None, limit: int) -> tuple[Sequence[ApiKey], bool]:
    return fetch_page(session, select(ApiKey), ApiKey.created_at, ApiKey.id, cursor, limit)


def get_key(session: Session, key_id: str, *, lock: bool = False) -> ApiKey:
    stmt = select(ApiKey).where(ApiKey.id == key_id)
    key = session.scalar(stmt.with_for_update() if lock else stmt)
    if key is None:
        raise NotFound(f"no API key with id {key_id}")
    return key


def revoke_key(session: Session, key_id: str, actor: str, now: datetime) -> None:
    """Idempotent: revoking a revoked key changes nothing and records nothing."""
    key = get_key(session, key_id, lock=True)
    if key.revoked_at is not None:
        return
    key.revoked_at = now
    record_event(
        session, actor, "api_key.revoked", "api_key", key.id, after={"name": key.name}, at=now
    )


def rotate_key(session: Session, key_id: str, actor: str, now: datetime) -> tuple[ApiKey, str]:
    """A new secret for the same key (name, role, expiry): the old secret stops working now."""
    key = get_key(session, key_id, lock=True)
    if key.revoked_at is not None:
        raise Conflict(f"key {key.name!r} is revoked; create a new key instead")
    secret = new_secret()
    key.secret_hash = secret_digest(secret)
    key.rotated_at = now
    record_event(
        session, actor, "api_key.rotated", "api_key", key.id, after={"name": key.name}, at=now
    )
    return key, secret


def rotated_key(session: Session, key_id: str, actor: str, now: datetime) -> ApiKeyCreated:
    return created_out(*rotate_key(session, key_id, actor, now))


def resolve_key(session: Session, secret: str, now: datetime) -> ResolvedKey:
    """The live key a secret names, in one indexed query; Unauthorized otherwise."""
    row = session.execute(
        select(ApiKey.id, ApiKey.name, ApiKey.role, ApiKey.expires_at, ApiKey.revoked_at).where(
            ApiKey.secret_hash == secret_digest(secret)
        )
    ).first()
    if row is None:
        raise Unauthorized("the API key is not valid (unknown or rotated)")
    if row.revoked_at is not None:
        raise Unauthorized(f"the API key {row.name!r} was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthorized(f"the API key {row.name!r} expired")
    role: Role = row.role
    return ResolvedKey(row.id, row.name, role, secret_digest(secret))


def live_key_by_id(session: Session, key_id: str, now: datetime) -> ResolvedKey | None:
    """For /ui sessions, which name a key by id: the key if it is still live, else None."""
    key = session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None:
        return None
    if key.expires_at is not None and key.expires_at <= now:
        return None
    role: Role = key.role  # type: ignore[assignment]
    return ResolvedKey(key.id, key.name, role, key.secret_hash)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
