"""Waiting for events: one reader per worker hands each waiter the events that match it.

Long-polls (`GET /v1/events?wait=`) and streams (`GET /v1/events/stream`) register a `Waiter`
with the worker's `EventHub`. While anybody waits, a single reader task reads the new events of
the log, unfiltered, in one short statement per wake-up, and hands each waiter those that match
its filter: waiters hold no database connection and never read the log themselves after their
first page, so a thousand of them cost one read per wake-up, like one. Waiters are grouped by
filter and indexed by subject, so an event costs nothing for the waiters it does not concern.

The reader wakes when a write session of this worker commits (`poke`) and otherwise every
`events_poll_s`, when it sees what other workers and replicas wrote: the events table is the
bus, the same on PostgreSQL and SQLite and across any number of processes.

A waiter registers before it reads its first page, and the reader knows where it starts before
that page is read, so an event committed after the page's snapshot reaches the waiter through the
reader. Sequence numbers are taken at insert, not at commit: on PostgreSQL an event can become
visible after events with higher seqs. The reader remembers the seqs it skipped (`LogCursor`) and
looks for them again for `HOLE_GRACE_S`; one it finds is handed out late, below seqs already
handed out (a stream sends it anyway: at least once beats never).

Each waiter is counted against a cap per worker and per principal (429 with Retry-After beyond),
and leaves as soon as its client goes: the routes watch for the disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter as Tally
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from types import TracebackType
from typing import Literal

from fastapi.concurrency import run_in_threadpool
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy.exc import SQLAlchemyError

from service.core.events import EventFilter, EventLog
from service.errors import TooManyRequests
from service.schemas.events import EventOut

WaiterKind = Literal["long_poll", "stream"]
# Events read per statement; a longer backlog is read in several, back to back.
READ_BATCH = 500
# Where the reader starts: the seqs missing among the last this many are holes to look for.
TAIL = 1000
# How long a skipped seq is looked for again (a transaction that inserted an event and has not
# committed yet); at most MAX_HOLES of them, the most recent.
HOLE_GRACE_S = 30.0
MAX_HOLES = 1000
# A waiter refused by a cap may try again after this long (another waiter will have ended, or
# the request will reach another worker).
CAP_RETRY_AFTER_S = 5

log = logging.getLogger("numa_balloon")


@dataclass(eq=False)
class LogEvent:
    """An event as the reader read it, once for every waiter of the worker."""

    out: EventOut
    late: bool  # found in a hole: higher seqs were handed out before it

    @property
    def seq(self) -> int:
        return self.out.seq

    @cached_property
    def json(self) -> str:
        """Rendered once, however many streams send it."""
        return self.out.model_dump_json()


class LogCursor:
    """How far the reader has read the log, and the seqs below that it has not seen yet."""

    def __init__(self, top: int, holes: dict[int, float] | None = None) -> None:
        self.top = top
        self._holes = holes or {}  # seq -> when it was first found missing

    @classmethod
    def from_recent(cls, seqs_desc: Sequence[int], window: int, now: float) -> LogCursor:
        """Starting at the highest of the `window` highest seqs; those missing among the
        `window` numbers below it may still commit."""
        if not seqs_desc:
            return cls(0)
        top, present = seqs_desc[0], set(seqs_desc)
        missing = range(max(1, top - window + 1), top)
        return cls(top, {s: now for s in missing if s not in present})

    def holes(self, now: float) -> list[int]:
        """The seqs to look for again, those past their grace forgotten."""
        self._holes = {s: t for s, t in self._holes.items() if now - t < HOLE_GRACE_S}
        return sorted(self._holes)

    def absorb(self, seqs: Sequence[int], now: float) -> set[int]:
        """Record the seqs of a read (ascending); returns those that filled a hole."""
        late = {s for s in seqs if s in self._holes}
        for s in late:
            del self._holes[s]
        new = [s for s in seqs if s > self.top]
        if new:
            present = set(new)
            for s in range(self.top + 1, new[-1]):
                if s not in present:
                    self._holes[s] = now
            self.top = new[-1]
            if len(self._holes) > MAX_HOLES:
                keep = sorted(self._holes)[-MAX_HOLES:]
                self._holes = {s: self._holes[s] for s in keep}
        return late


class Waiter:
    """One long-poll or stream: its filter, the seq it has seen up to, what arrived for it.

    Counted against the caps from `EventHub.reserve` until `close`; receives events from `start`.
    """

    def __init__(self, hub: EventHub, key: str, kind: WaiterKind) -> None:
        self.hub, self.key, self.kind = hub, key, kind
        self.where = EventFilter()
        self.since = 0
        self.room = 0
        self.take_late = kind == "stream"
        self.pending: list[LogEvent] = []
        self.overflowed = False
        self._woken = asyncio.Event()
        self._closed = False

    async def start(self, where: EventFilter, since: int, room: int) -> None:
        """Receive the events matching `where` after `since` (at most `room` of them until they
        are taken). Returns once the reader knows where it starts: read the first page after."""
        self.where, self.since, self.room = where, since, room
        await self.hub._add(self)

    def push(self, event: LogEvent) -> None:
        if event.seq <= self.since and not (event.late and self.take_late):
            return
        if len(self.pending) >= self.room:
            self.overflowed = True
        else:
            self.pending.append(event)
        self._woken.set()

    async def wait(self) -> None:
        """Until something arrived (or it overflowed)."""
        await self._woken.wait()

    def take(self) -> list[LogEvent]:
        """What arrived, in seq order; the waiter is empty (and not overflowed) after."""
        taken = sorted(self.pending, key=lambda e: e.seq)
        self.pending, self.overflowed = [], False
        self._woken.clear()
        return taken

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.hub._remove(self)

    def __enter__(self) -> Waiter:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


class EventHub:
    """One per worker (process): the waiters, their caps, and the reader that feeds them."""

    def __init__(
        self,
        source: EventLog,
        poll_s: float,
        *,
        max_waiters: int,
        max_per_key: int,
        registry: CollectorRegistry,
    ) -> None:
        self._source = source
        self._poll_s = poll_s
        self.max_waiters = max_waiters
        self.max_per_key = max_per_key
        self._reserved: Tally[str] = Tally()
        self._by_kind: Tally[WaiterKind] = Tally()
        # subject_id (None: any subject) -> filter -> the waiters with that filter
        self._groups: dict[str | None, dict[EventFilter, set[Waiter]]] = {}
        self._listening = 0
        self._cursor: LogCursor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: asyncio.Task[None] | None = None
        self._kick: asyncio.Event | None = None
        self._starting: asyncio.Lock | None = None
        self._gauge = Gauge(
            "numa_balloon_event_waiters",
            "Open long-polls and event streams in this worker",
            ["kind"],
            registry=registry,
        )
        self._reads = Counter(
            "numa_balloon_event_log_reads",
            "Reads of the event log made for this worker's waiters (one per wake-up)",
            registry=registry,
        )

    @property
    def position(self) -> int | None:
        """The highest seq the reader has read; None while nobody waits (it does not read)."""
        return self._cursor.top if self._cursor is not None else None

    def waiting(self, kind: WaiterKind | None = None) -> int:
        """Waiters counted against the caps now (of one kind, or all)."""
        return self._by_kind[kind] if kind is not None else self._reserved.total()

    def poke(self, *_: object) -> None:
        """Something committed in this process (any thread): read the log now (if anybody
        waits: a waiter arriving later reads its first page itself)."""
        loop, kick = self._loop, self._kick
        if self._listening and loop is not None and kick is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(kick.set)

    def reserve(self, key: str, kind: WaiterKind) -> Waiter:
        """A waiter counted against the caps, or 429 when the worker or `key` is at its cap."""
        if self.max_waiters and self._reserved.total() >= self.max_waiters:
            raise TooManyRequests(
                f"this worker has {self.max_waiters} long-polls and streams open, its limit "
                "(NUMA_BALLOON_EVENTS_MAX_WAITERS)",
                CAP_RETRY_AFTER_S,
            )
        if self.max_per_key and self._reserved[key] >= self.max_per_key:
            raise TooManyRequests(
                f"this credential has {self.max_per_key} long-polls and streams open on this "
                "worker, its limit (NUMA_BALLOON_EVENTS_MAX_WAITERS_PER_KEY)",
                CAP_RETRY_AFTER_S,
            )
        self._reserved[key] += 1
        self._by_kind[kind] += 1
        self._gauge.labels(kind).inc()
        return Waiter(self, key, kind)

    async def _add(self, waiter: Waiter) -> None:
        self._ensure_loop()
        bucket = self._groups.setdefault(waiter.where.subject_id, {})
        bucket.setdefault(waiter.where, set()).add(waiter)
        self._listening += 1
        assert self._starting is not None and self._kick is not None
        async with self._starting:
            if self._cursor is None:
                self._kick.clear()  # what commits from now on, the reader reads
                seqs = await run_in_threadpool(self._source.recent, TAIL)
                self._reads.inc()
                self._cursor = LogCursor.from_recent(seqs, TAIL, time.monotonic())
            if self._reader is None or self._reader.done():
                self._reader = asyncio.get_running_loop().create_task(self._read_while_waited())

    def _remove(self, waiter: Waiter) -> None:
        self._reserved[waiter.key] -= 1
        if self._reserved[waiter.key] <= 0:
            del self._reserved[waiter.key]
        self._by_kind[waiter.kind] -= 1
        self._gauge.labels(waiter.kind).dec()
        bucket = self._groups.get(waiter.where.subject_id, {})
        group = bucket.get(waiter.where)
        if group is not None and waiter in group:
            group.discard(waiter)
            self._listening -= 1
            if not group:
                del bucket[waiter.where]
                if not bucket:
                    del self._groups[waiter.where.subject_id]

    def _ensure_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new loop (tests): new primitives
            self._loop = loop
            self._kick = asyncio.Event()
            self._starting = asyncio.Lock()
            self._reader = None
            self._cursor = None
            self._groups, self._listening = {}, 0

    async def _read_while_waited(self) -> None:
        """Sleeps until a commit of this worker or the poll interval, reads, hands out; stops
        when nobody waits any more."""
        assert self._kick is not None
        more = False
        while self._listening > 0:
            if not more:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), self._poll_s)
                if self._listening == 0:
                    break
            self._kick.clear()
            try:
                more = await self._read_once()
            except SQLAlchemyError as exc:  # the database is away: waiters time out meanwhile
                log.warning("reading the event log for waiters failed: %s", exc)
                more = False
            except Exception:  # a bug: say so, and keep serving the waiters
                log.exception("reading the event log for waiters failed")
                more = False
        self._cursor = None  # nobody follows the log now: the next waiter starts afresh

    async def _read_once(self) -> bool:
        """One statement: the events after the cursor and those found in its holes; hands them
        to the waiters. True when there are more to read at once."""
        cursor = self._cursor
        assert cursor is not None
        rows = await run_in_threadpool(
            self._source.new, cursor.top, cursor.holes(time.monotonic()), READ_BATCH
        )
        self._reads.inc()
        more = len(rows) > READ_BATCH
        rows = rows[:READ_BATCH]
        late = cursor.absorb([r.seq for r in rows], time.monotonic())
        self._dispatch([LogEvent(r, r.seq in late) for r in rows])
        return more

    def _dispatch(self, events: list[LogEvent]) -> None:
        anywhere = self._groups.get(None)
        for event in events:
            e = event.out
            buckets = (
                [anywhere] if e.subject_id is None else [self._groups.get(e.subject_id), anywhere]
            )
            for bucket in buckets:
                for where, waiters in (bucket or {}).items():
                    if where.matches(
                        actor=e.actor,
                        action=e.action,
                        subject_type=e.subject_type,
                        subject_id=e.subject_id,
                    ):
                        for waiter in waiters:
                            waiter.push(event)
