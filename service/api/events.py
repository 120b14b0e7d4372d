"""The audit log, read by `since` (the last seq seen)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from service.api.auth import Admin
from service.api.deps import SessionDep, SettingsDep
from service.api.pagination import LimitQuery, page_size
from service.api.problems import responses
from service.db.models import Event
from service.schemas.common import UUID_PATTERN, Page
from service.schemas.events import EventOut

router = APIRouter(prefix="/v1/events", tags=["events"])

# Event.seq is a 32-bit integer column: a larger value is not a position in the log, it is a 422.
MAX_SEQ = (1 << 31) - 1


@router.get("", response_model=Page[EventOut], responses=responses(401, 403, 422))
def list_events(
    session: SessionDep,
    settings: SettingsDep,
    _: Admin,
    since: Annotated[int | None, Query(ge=0, le=MAX_SEQ, description="Last seq seen")] = None,
    cursor: Annotated[
        int | None,
        Query(ge=0, le=MAX_SEQ, description="next_cursor of the last page"),
    ] = None,
    subject_id: Annotated[str | None, Query(pattern=UUID_PATTERN)] = None,
    actor: Annotated[
        str | None,
        Query(
            max_length=80,
            pattern=r"^[\x21-\x7e]+$",
            description="Only this caller's events: admin, key:<name>, agent:<host id>...",
        ),
    ] = None,
    limit: LimitQuery = None,
) -> Page[EventOut]:
    n = page_size(limit, settings)
    after = max(since or 0, cursor or 0)
    stmt = select(Event).where(Event.seq > after)
    if subject_id is not None:
        stmt = stmt.where(Event.subject_id == subject_id)
    if actor is not None:
        stmt = stmt.where(Event.actor == actor)
    rows = session.scalars(stmt.order_by(Event.seq).limit(n + 1)).all()
    items = [EventOut.model_validate(e, from_attributes=True) for e in rows[:n]]
    return Page[EventOut](
        items=items, next_cursor=str(items[-1].seq) if len(rows) > n and items else None
    )
