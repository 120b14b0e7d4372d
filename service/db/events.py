"""Reads of the audit log: filtered pages after a sequence number, and the latest sequence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from service.db.models import Event


@dataclass(frozen=True)
class EventFilter:
    """What a watcher wants: every field that is set must match."""

    subject_id: str | None = None
    kinds: tuple[str, ...] = ()
    actor: str | None = None


def latest_seq(session: Session) -> int:
    return int(session.scalar(select(func.coalesce(func.max(Event.seq), 0))) or 0)


def events_after(
    session: Session, after: int, limit: int, where: EventFilter
) -> tuple[Sequence[Event], int]:
    """Up to `limit` + 1 matching events after `after`, and the latest seq this snapshot holds
    (so a watcher whose filter matched nothing knows how far it has looked)."""
    stmt = select(Event).where(Event.seq > after)
    if where.subject_id is not None:
        stmt = stmt.where(Event.subject_id == where.subject_id)
    if where.kinds:
        # A kind is an action ("migration.advanced") or a subject type ("migration").
        stmt = stmt.where(or_(Event.action.in_(where.kinds), Event.subject_type.in_(where.kinds)))
    if where.actor is not None:
        stmt = stmt.where(Event.actor == where.actor)
    rows = session.scalars(stmt.order_by(Event.seq).limit(limit + 1)).all()
    return rows, latest_seq(session)
