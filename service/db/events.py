"""Reads of the audit log: filtered pages after a sequence number, the latest sequence, and the
unfiltered reads that feed every waiter of a worker (`service.api.watch.EventHub`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from service.db.models import Event


@dataclass(frozen=True)
class EventFilter:
    """What a watcher wants: every field that is set must match.

    `events_after` says it in SQL, `matches` in Python (for events already read once for all
    waiters); the two say the same thing and tests hold them to it."""

    subject_id: str | None = None
    kinds: tuple[str, ...] = ()
    actor: str | None = None

    def matches(
        self, *, actor: str, action: str, subject_type: str, subject_id: str | None
    ) -> bool:
        if self.subject_id is not None and subject_id != self.subject_id:
            return False
        if self.kinds and action not in self.kinds and subject_type not in self.kinds:
            return False
        return self.actor is None or actor == self.actor


def latest_seq(session: Session) -> int:
    return int(session.scalar(select(func.coalesce(func.max(Event.seq), 0))) or 0)


def events_after(session: Session, after: int, limit: int, where: EventFilter) -> Sequence[Event]:
    """Up to `limit` + 1 matching events after `after`, in seq order (one more than asked says
    whether there are more)."""
    stmt = select(Event).where(Event.seq > after)
    if where.subject_id is not None:
        stmt = stmt.where(Event.subject_id == where.subject_id)
    if where.kinds:
        # A kind is an action ("migration.advanced") or a subject type ("migration").
        stmt = stmt.where(or_(Event.action.in_(where.kinds), Event.subject_type.in_(where.kinds)))
    if where.actor is not None:
        stmt = stmt.where(Event.actor == where.actor)
    return session.scalars(stmt.order_by(Event.seq).limit(limit + 1)).all()


def new_events(session: Session, after: int, holes: Sequence[int], limit: int) -> Sequence[Event]:
    """Up to `limit` + 1 events after `after` or among `holes` (seqs below `after` that were not
    committed yet when the log was last read), in seq order: one statement, on the primary key."""
    cond = Event.seq > after
    if holes:
        cond = or_(cond, Event.seq.in_(holes))
    return session.scalars(select(Event).where(cond).order_by(Event.seq).limit(limit + 1)).all()


def recent_seqs(session: Session, count: int) -> list[int]:
    """The `count` highest seqs committed, highest first (where reading the log begins)."""
    return list(session.scalars(select(Event.seq).order_by(Event.seq.desc()).limit(count)))
