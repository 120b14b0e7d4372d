"""The audit log: read by `since` (the last seq seen), waited on, or streamed.

Long-poll (`?wait=`) and the SSE stream hold no database connection while they wait: each
registers a waiter with the worker's `service.api.watch.EventHub`, reads its first page, and then
gets the events that match it from the hub's one reader. A waiter counts against a cap per worker
and per credential (`events_max_waiters`, `events_max_waiters_per_key`; 429 beyond) and leaves
when its client disconnects: the long-poll watches for it, the stream is cancelled by Starlette.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from service.api.auth import Admin, Principal
from service.api.deps import SettingsDep, run
from service.api.pagination import LimitQuery, page_size
from service.api.problems import responses
from service.api.watch import EventHub, LogEvent, Waiter
from service.core import events as core
from service.core.events import EventFilter
from service.schemas.common import UUID_PATTERN, Page
from service.schemas.events import EventOut

router = APIRouter(prefix="/v1/events", tags=["events"])

MAX_WAIT_S = 60
# Event.seq is a 32-bit integer column: a larger value is not a position in the log, it is a 422.
MAX_SEQ = (1 << 31) - 1
STREAM_BATCH = 100
# Events a stream holds for a slow client; past that it reads them again from the database.
STREAM_ROOM = 1000

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


def _hub(request: Request) -> EventHub:
    hub: EventHub = request.app.state.event_hub
    return hub


def _cap_key(caller: Principal) -> str:
    """Whose waiters these are: the API key (by id), else the kind of token (the admin)."""
    return caller.subject_id or caller.actor


async def _read(
    request: Request, after: int, n: int, where: EventFilter
) -> tuple[list[EventOut], bool]:
    return await run(request, core.page, after, n, where)


def _page(items: list[EventOut], more: bool) -> Page[EventOut]:
    return Page[EventOut](items=items, next_cursor=str(items[-1].seq) if more and items else None)


async def _until_disconnected(request: Request, scope: anyio.CancelScope) -> None:
    """Cancel `scope` when the client goes. A GET's one body message comes first; the next
    `receive` returns only with the disconnect (or once the response is complete)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def _wait(request: Request, waiter: Waiter, timeout_s: float) -> list[LogEvent]:
    """What reaches `waiter` within `timeout_s`; nothing if the client goes first."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(_until_disconnected, request, tg.cancel_scope)
        with anyio.move_on_after(timeout_s):
            await waiter.wait()
        tg.cancel_scope.cancel()
    return waiter.take()


@router.get(
    "",
    response_model=Page[EventOut],
    responses=responses(401, 403, 422),
    summary="List audit events after a sequence number, optionally waiting for the next one.",
)
async def list_events(
    request: Request,
    settings: SettingsDep,
    caller: Admin,
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
            "an event and answer as soon as one is written (an empty page after the wait). "
            "Open long-polls and streams are capped per worker and per credential: 429 with "
            "Retry-After beyond",
        ),
    ] = None,
) -> Page[EventOut]:
    n = page_size(limit, settings)
    after = max(since or 0, cursor or 0)
    where = _filter(subject_id, kind, actor)
    if not wait:
        return _page(*await _read(request, after, n, where))
    with _hub(request).reserve(_cap_key(caller), "long_poll") as waiter:
        # Registered before the first read: whatever that read's snapshot misses reaches it.
        await waiter.start(where, after, room=n + 1)
        items, more = await _read(request, after, n, where)
        if items:
            return _page(items, more)
        arrived = [e.out for e in await _wait(request, waiter, wait)]
        return _page(arrived[:n], len(arrived) > n or waiter.overflowed)


def _resume_point(last_event_id: str | None, since: int | None) -> int | None:
    """Where a stream starts; None: from the latest event on."""
    if last_event_id is not None:
        # A seq beyond any this log can hold means "nothing newer yet": resume from the top.
        return min(int(last_event_id.strip()), MAX_SEQ)
    return since


async def _stream_waiter(request: Request, caller: Admin) -> AsyncIterator[Waiter]:
    """Counted against the caps before the stream's 200 is sent (a 429 must come first), until
    the stream ends or its client goes."""
    with _hub(request).reserve(_cap_key(caller), "stream") as waiter:
        yield waiter


# A stream's place among the capped waiters, for every route that streams the log (/ui's too).
StreamWaiter = Annotated[Waiter, Depends(_stream_waiter)]


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    responses={
        **responses(401, 403, 422),
        200: {
            "description": "`text/event-stream`: one SSE event per audit event, `id:` its seq, "
            "`event:` its action, `data:` the event as JSON (the list's item schema). Open "
            "streams and long-polls are capped per worker and per credential (429 beyond)",
        },
    },
    summary="Stream audit events as Server-Sent Events, resumable with Last-Event-ID.",
)
async def stream_events(
    request: Request,
    waiter: StreamWaiter,
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
    start = _resume_point(last_event_id, since)
    after = start if start is not None else await run(request, core.latest_seq)
    await waiter.start(where, after, room=STREAM_ROOM)
    left = limit
    while left != 0:
        # From the database until caught up (at the start, and after the client fell behind):
        # the read covers whatever the waiter held, so drop it first.
        waiter.take()
        items, more = await _read(request, after, min(STREAM_BATCH, left or 1 << 30), where)
        for item in items:
            yield _sse(item.seq, item.action, item.model_dump_json())
        if left is not None:
            left -= len(items)
        if items:
            after = waiter.since = items[-1].seq
        if more:
            continue
        # Then from the hub, as events are written, until the client falls too far behind.
        while left != 0:
            await waiter.wait()
            if waiter.overflowed:
                break
            for event in waiter.take():
                if left == 0 or (event.seq <= after and not event.late):
                    continue
                yield _sse(event.seq, event.out.action, event.json)
                after = waiter.since = max(after, event.seq)
                if left is not None:
                    left -= 1


def _sse(seq: int, action: str, data: str) -> ServerSentEvent:
    return ServerSentEvent(id=str(seq), event=action, raw_data=data, retry=2000)
