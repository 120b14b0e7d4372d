"""Agent and guest tokens: issue, revocation and digests (rows keep their digest for the audit
trail).

A token is 256 random bits shown once; only its SHA-256 digest is stored, so issuing one belongs
with the rows that hold it, where core operations (registering a host, creating a domain) reach
it without the web layer.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Literal

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from service.db.models import Token
from service.db.raw import PlainConnections

TOKEN_PREFIX = {"agent": "nbh_", "guest": "nbg_"}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


# A live token by its digest: the lookup before every agent and guest request.
TOKEN_BY_DIGEST = select(Token.kind, Token.subject_id, Token.token_hash).where(
    Token.token_hash == bindparam("b_hash"), Token.revoked_at.is_(None)
)


async def token_by_digest_plain(
    plain: PlainConnections, token_hash: str
) -> tuple[str, str, str] | None:
    """(kind, subject id, digest) of the live token with this digest, on a plain connection
    (`db/raw.py`); raises `raw.Unavailable` when the connection fails."""
    row = await plain.one_row(TOKEN_BY_DIGEST, {"b_hash": token_hash})
    return None if row is None else (row[0], row[1], row[2])


def issue_token(
    session: Session, kind: Literal["agent", "guest"], subject_id: str, now: datetime
) -> str:
    """Revoke the subject's current token of this kind and issue a new one (shown once)."""
    revoke_tokens(session, kind, subject_id, now)
    token = TOKEN_PREFIX[kind] + secrets.token_urlsafe(32)
    session.add(Token(kind=kind, subject_id=subject_id, token_hash=digest(token), created_at=now))
    return token


def revoke_tokens(
    session: Session, kind: Literal["agent", "guest"], subject_id: str, now: datetime
) -> None:
    session.execute(
        update(Token)
        .where(Token.kind == kind, Token.subject_id == subject_id, Token.revoked_at.is_(None))
        .values(revoked_at=now)
    )
