"""Opaque cursors over (created_at, id): stable under inserts, no OFFSET scans."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Row, Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session

from service.errors import InvalidInput

T = TypeVar("T", bound=Any)


class BadCursor(InvalidInput):
    """A cursor this service did not issue: a 422 that points at the `cursor` query parameter."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, errors=[{"loc": ["query", "cursor"], "msg": detail}])


def encode_cursor(created_at: datetime, row_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class Keyed(Protocol):
    @property
    def created_at(self) -> datetime: ...

    @property
    def id(self) -> str: ...


def next_cursor(rows: Sequence[Keyed], more: bool) -> str | None:
    """The cursor after a page from `fetch_page`, None on the last page."""
    if not more or not rows:
        return None
    last = rows[-1]
    return encode_cursor(last.created_at, last.id)


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, row_id = json.loads(raw)
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None or not isinstance(row_id, str):
            raise ValueError
        return parsed, row_id
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BadCursor("the cursor is not one this service issued") from exc


def keyset(
    stmt: Select[T],
    created_at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[str],
    cursor: str | None,
    limit: int,
) -> Select[T]:
    if cursor is not None:
        at, last_id = decode_cursor(cursor)
        stmt = stmt.where(or_(created_at > at, and_(created_at == at, row_id > last_id)))
    return stmt.order_by(created_at, row_id).limit(limit + 1)


def fetch_page(
    session: Session,
    stmt: Select[T],
    created_at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[str],
    cursor: str | None,
    limit: int,
) -> tuple[Sequence[T], bool]:
    """One page of entities and whether another follows (one row more is read to know)."""
    rows = session.scalars(keyset(stmt, created_at, row_id, cursor, limit)).all()
    return rows[:limit], len(rows) > limit


def fetch_row_page(
    session: Session,
    stmt: Select[Any],
    created_at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[str],
    cursor: str | None,
    limit: int,
) -> tuple[Sequence[Row[Any]], bool]:
    """`fetch_page` of a statement of columns: plain rows, no ORM objects."""
    rows = session.execute(keyset(stmt, created_at, row_id, cursor, limit)).all()
    return rows[:limit], len(rows) > limit
