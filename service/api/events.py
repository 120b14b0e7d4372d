"""The audit log: read by `since` (the last seq seen), waited on, or streamed.

Long-poll (`?wait=`) and the SSE stream hold no database connection while they wait: each read is
a short session of its own, and `service.api.watch.EventWatcher` tells them when to read again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy.orm import Session

from service.api.auth import Admin
from service.api.deps import SettingsDep, run_db
from service.api.pagination import LimitQuery, page_size
from service.api.problems import responses
from service.api.watch import EventWatcher
from service.db.events import EventFilter, events_after, latest_seq
from service.db.models import Event
from service.schemas.common import UUID_PATTERN, Page
from service.schemas.events import EventOut

router = APIRouter(prefix="/v1/events", tags=["events"])

MAX_WAIT_S = 60
# Event.seq is a 32-bit integer column: a larger value is not a position in the log, it is a 422.
MAX_SEQ = (1 << 31) - 1
# An idle stream re-reads at least this often (and FastAPI sends keep-alive comments).
STREAM_IDLE_S = 15.0
STREAM_BATCH = 100

SubjectQuery = Annotated[
    str | None,
    Query(pattern=UUID_PATTERN, description="Only events about this host, domain, ..."),
]
KindQuery = Annotated[
    list[str] | None,
    Query(
        max_length=20,
        description="Only these kinds, repeatable: an action (`migration.advanced`) or a "
        "subject type (`migration`)",
    ),
]
ActorQuery = Annotated[
    str | None, Query(max_length=80, description="Only events by this actor, e.g. `admin`")
]


def _filter(subject_id: str | None, kind: list[str] | None, actor: str | None) -> EventFilter:
    return EventFilter(subject_id=subject_id, kinds=tuple(kind or ()), actor=actor)


def _watcher(request: Request) -> EventWatcher:
    watcher: EventWatcher = request.app.state.event_watcher
    return watcher


async def _read(
    request: Request, after: int, n: int, where: EventFilter
) -> tuple[list[EventOut], bool, int]:
    def read(session: Session) -> tuple[list[EventOut], bool, int]:
        rows, latest = events_after(session, after, n, where)
        return [_out(e) for e in rows[:n]], len(rows) > n, latest

    return await run_db(request, read)


def _out(e: Event) -> EventOut:
    return EventOut.model_validate(e, from_attributes=True)


@router.get(
    "",
    response_model=Page[EventOut],
    responses=responses(401, 403, 422),
    summary="List audit events after a sequence number, optionally waiting for the next one.",
)
async def list_events(
    request: Request,
    settings: SettingsDep,
    _: Admin,
    since: Annotated[int | None, Query(ge=0, le=MAX_SEQ, description="Last seq seen")] = None,
    cursor: Annotated[
        int | None, Query(ge=0, le=MAX_SEQ, description="next_cursor of the last page")
    ] = None,
    subject_id: SubjectQuery = None,
    kind: KindQuery = None,
    actor: ActorQuery = None,
    limit: LimitQuery = None,
    wait: Annotated[
        float | None,
        Query(
            ge=0,
            le=MAX_WAIT_S,
            description="Long-poll: when nothing matches yet, wait up to this many seconds for "
            "an event and answer as soon as one is written (an empty page after the wait)",
        ),
    ] = None,
) -> Page[EventOut]:
    n = page_size(limit, settings)
    after = max(since or 0, cursor or 0)
    where = _filter(subject_id, kind, actor)
    deadline = _now() + (wait or 0)
    looked = after
    while True:
        items, more, latest = await _read(request, after, n, where)
        remaining = deadline - _now()
        if items or remaining <= 0:
            return Page[EventOut](
                items=items, next_cursor=str(items[-1].seq) if more and items else None
            )
        # Nothing matched up to `latest`: wait for anything newer, then read again.
        looked = max(looked, latest)
        await _watcher(request).wait_beyond(looked, remaining)


def _now() -> float:
    return asyncio.get_running_loop().time()


def _resume_point(last_event_id: str | None, since: int | None, latest: int) -> int:
    # A seq beyond any this log can hold means "nothing newer yet": resume from the top.
    if last_event_id is not None:
        return min(int(last_event_id.strip()), MAX_SEQ)
    return since if since is not None else latest


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    responses={
        **responses(401, 403, 422),
        200: {
            "description": "`text/event-stream`: one SSE event per audit event, `id:` its seq, "
            "`event:` its action, `data:` the event as JSON (the list's item schema)",
        },
    },
    summary="Stream audit events as Server-Sent Events, resumable with Last-Event-ID.",
)
async def stream_events(
    request: Request,
    _: Admin,
    since: Annotated[
        int | None,
        Query(ge=0, le=MAX_SEQ, description="Start after this seq (default: from now on)"),
    ] = None,
    subject_id: SubjectQuery = None,
    kind: KindQuery = None,
    actor: ActorQuery = None,
    limit: Annotated[
        int | None,
        Query(ge=1, le=10000, description="End the stream after this many events (scripts)"),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=20,
            pattern=r"^[0-9]{1,19}$",
            description="Sent by EventSource on reconnect: resume after this seq (wins over since)",
        ),
    ] = None,
) -> AsyncIterator[ServerSentEvent]:
    where = _filter(subject_id, kind, actor)
    watcher = _watcher(request)
    after = _resume_point(last_event_id, since, await run_db(request, latest_seq))
    looked, left = after, limit
    while left != 0 and not await request.is_disconnected():
        items, more, latest = await _read(request, after, min(STREAM_BATCH, left or 1 << 30), where)
        for item in items:
            yield _sse(item)
        if left is not None:
            left -= len(items)
        if items:
            after = items[-1].seq
        if more:
            continue
        looked = max(looked, after, latest)
        await watcher.wait_beyond(looked, STREAM_IDLE_S)


def _sse(item: EventOut) -> ServerSentEvent:
    return ServerSentEvent(
        id=str(item.seq), event=item.action, raw_data=item.model_dump_json(), retry=2000
    )
