"""The audit log: every state change writes one event in the same transaction."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.orm import Session

from service.db.base import utcnow
from service.db.models import Event
from service.db.state import WriteBatch

_EVENTS = cast(Table, Event.__table__)


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


def add_event(
    batch: WriteBatch,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """`record_event` as a plain INSERT in a write batch (no ORM object, no unit of work)."""
    batch.add_rows(
        _EVENTS,
        [
            {
                "at": utcnow(),
                "actor": actor,
                "action": action,
                "subject_type": subject_type,
                "subject_id": subject_id,
                "before": before,
                "after": after,
            }
        ],
    )
