"""The audit log: every state change writes one event in the same transaction.

Rows come from `service.db.changes.event`, the one shape of an event. Writes that go through
`apply` carry their events in the change set (sent in the same batch); the others, which change
no memory (keys, labels, tokens, host registration), write theirs here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from service.db.changes import event
from service.db.tables import EVENTS

_INSERT_EVENT = insert(EVENTS)


def record_event(
    session: Session,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    *,
    at: datetime,
) -> None:
    row = event(actor, action, subject_type, subject_id, at=at, before=before, after=after)
    session.execute(_INSERT_EVENT, [row])
