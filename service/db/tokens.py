"""Revocation of agent and guest tokens (rows keep their digest for the audit trail)."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import update
from sqlalchemy.orm import Session

from service.db.base import utcnow
from service.db.models import Token


def revoke_tokens(session: Session, kind: Literal["agent", "guest"], subject_id: str) -> None:
    session.execute(
        update(Token)
        .where(Token.kind == kind, Token.subject_id == subject_id, Token.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
