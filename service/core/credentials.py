"""Who is calling: the principal a bearer token or a /ui session names.

The admin bootstrap token comes from the settings, is compared in constant time and never
touches the database. API keys, agent and guest tokens are 256-bit random strings shown once
and stored as SHA-256 digests, so a token is found by one indexed equality lookup, in a lookup
session of its own (`unit.lookup`) before the request's unit of work opens.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from service.core import unit
from service.core.api_keys import KEY_PREFIX, ResolvedKey, live_key_by_id, resolve_key
from service.db.tokens import TOKEN_BY_DIGEST, TOKEN_PREFIX, digest, token_by_digest_plain
from service.errors import Unauthorized
from service.schemas.api_keys import Role
from service.settings import Settings

Kind = Literal["admin", "key", "agent", "guest"]


@dataclass(frozen=True)
class Principal:
    """Who is calling. `role` is set for the admin token ("admin") and for API keys."""

    kind: Kind
    subject_id: str | None = None  # the host (agent), the domain (guest) or the key
    name: str | None = None  # the key's name
    role: Role | None = None

    @property
    def actor(self) -> str:
        """How the audit log names the caller: `admin`, `key:<name>`, `agent:<host id>`..."""
        if self.kind == "admin":
            return "admin"
        if self.kind == "key":
            return f"key:{self.name}"
        return f"{self.kind}:{self.subject_id}"

    @property
    def metrics_label(self) -> str:
        """Bounded cardinality: keys by name (few), agents and guests by kind (many)."""
        return self.actor if self.kind in ("admin", "key") else self.kind


ADMIN = Principal("admin", role="admin")


def is_admin(settings: Settings, token: str) -> bool:
    """Constant time, no database: digests of equal length compared with compare_digest."""
    admin = settings.admin_token
    return admin is not None and hmac.compare_digest(
        digest(token), digest(admin.get_secret_value())
    )


def admin_binding(settings: Settings) -> str | None:
    """What ties an admin's /ui session to the current admin token (16 hex of its digest);
    None without an admin token."""
    admin = settings.admin_token
    return digest(admin.get_secret_value())[:16] if admin is not None else None


def resolve(session: Session, token: str, now: datetime) -> Principal:
    """The principal a non-admin token names, in one indexed query by digest; else 401."""
    if token.startswith(KEY_PREFIX):
        key = resolve_key(session, token, now)
        return Principal("key", key.id, key.name, key.role)
    if not token.startswith(tuple(TOKEN_PREFIX.values())):
        raise Unauthorized("the bearer token is not valid")
    token_hash = digest(token)
    row = session.execute(TOKEN_BY_DIGEST, {"b_hash": token_hash}).first()
    return _token_principal(None if row is None else tuple(row), token_hash)


def _token_principal(row: tuple[Any, ...] | None, token_hash: str) -> Principal:
    """The principal of the token row (kind, subject, digest) found by `token_hash`; else 401."""
    if row is None or not hmac.compare_digest(row[2], token_hash):
        raise Unauthorized("the bearer token is not valid (unknown, revoked or rotated)")
    kind: Kind = "agent" if row[0] == "agent" else "guest"
    return Principal(kind, row[1])


def lookup(db: unit.Database, token: str, now: datetime) -> Principal:
    """`resolve` in a lookup session of its own (the request's unit is not open yet)."""
    return unit.lookup(db, lambda session: resolve(session, token, now))


async def lookup_plain(db: unit.Database, token: str) -> Principal | None:
    """`lookup` of an agent or guest token on a plain connection, awaited on the event loop
    (`unit.on_plain`: the same statement, a fifth of the CPU, no thread hop), for the hottest
    routes. None for anything else, or when that path is not available now: the caller then
    takes `lookup`."""
    if not token.startswith(tuple(TOKEN_PREFIX.values())):
        return None
    token_hash = digest(token)
    row = await unit.on_plain(db, lambda plain: token_by_digest_plain(plain, token_hash))
    if isinstance(row, unit.NotNow):
        return None
    return _token_principal(row, token_hash)


def session_key(db: unit.Database, key_id: str, now: datetime) -> ResolvedKey | None:
    """The key a /ui session cookie names, if it is still live (revoked, expired: None)."""
    return unit.lookup(db, lambda session: live_key_by_id(session, key_id, now))


def sign_in(db: unit.Database, token: str, now: datetime) -> tuple[Principal, str | None]:
    """The principal of a key (or agent or guest token) offered at the /ui sign-in, and the
    digest of a key's secret that its session cookie is bound to."""

    def work(session: Session) -> tuple[Principal, str | None]:
        if token.startswith(KEY_PREFIX):
            key = resolve_key(session, token, now)
            return Principal("key", key.id, key.name, key.role), key.secret_hash
        return resolve(session, token, now), None

    return unit.read(db, work)
