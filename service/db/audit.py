"""The audit log: every state change writes one event in the same transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from service.db.models import Event


def record_event(
    session: Session,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    session.add(
        Event(
            actor=actor,
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            before=before,
            after=after,
        )
    )
