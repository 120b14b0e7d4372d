"""Reads of the audit log for the event routes and the worker's event hub
(`service.api.watch.EventHub`), each a read unit of its own (`service.core.unit`).

`EventFilter` is the filter type of these reads (`service.db.events` says it in SQL and in
Python); it is part of this module's interface.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from service.core import unit
from service.db.events import EventFilter, events_after, new_events, recent_seqs
from service.db.events import latest_seq as _latest_seq
from service.db.models import Event
from service.schemas.events import EventOut

__all__ = ["EventFilter", "EventLog", "latest_seq", "page"]


def _out(e: Event) -> EventOut:
    return EventOut.model_validate(e, from_attributes=True)


def page(session: Session, after: int, n: int, where: EventFilter) -> tuple[list[EventOut], bool]:
    """Up to `n` matching events after `after`, and whether there are more."""
    rows = events_after(session, after, n, where)
    return [_out(e) for e in rows[:n]], len(rows) > n


def latest_seq(session: Session) -> int:
    """The highest seq in the log (0 when empty): where a stream from now on starts."""
    return _latest_seq(session)


class EventLog:
    """The two reads the hub makes, each in a short read unit of its own (through the worker's
    database gate, like any request)."""

    def __init__(self, db: unit.Database) -> None:
        self._db = db

    def new(self, after: int, holes: Sequence[int], limit: int) -> list[EventOut]:
        """Up to `limit` + 1 events after `after` or among `holes`."""
        return unit.read(
            self._db, lambda session: [_out(e) for e in new_events(session, after, holes, limit)]
        )

    def recent(self, count: int) -> list[int]:
        """The highest seqs, highest first."""
        return unit.read(self._db, lambda session: recent_seqs(session, count))
