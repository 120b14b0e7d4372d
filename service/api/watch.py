"""Waiting for events without holding a database connection.

One `EventWatcher` per process. While anybody waits, a single poller task reads the latest event
seq (one short read session per `events_poll_s`) and wakes every waiter when it grows; a commit in
this process pokes the poller at once, so a local write wakes waiters without the poll delay.
Other replicas' writes are seen within one poll interval: the events table is the bus, so it works
the same on PostgreSQL and SQLite and across any number of API replicas. Waiters themselves hold
no connection while they wait, only while they read their page.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from fastapi.concurrency import run_in_threadpool


class EventWatcher:
    def __init__(self, read_latest: Callable[[], int], poll_s: float) -> None:
        self._read_latest = read_latest
        self._poll_s = poll_s
        self._latest = 0
        self._waiters = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poller: asyncio.Task[None] | None = None
        self._changed: asyncio.Event | None = None
        self._kick: asyncio.Event | None = None

    @property
    def latest(self) -> int:
        return self._latest

    def poke(self, *_: Any) -> None:
        """Something committed in this process (any thread): look at the table now."""
        loop, kick = self._loop, self._kick
        if loop is not None and kick is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(kick.set)

    async def wait_beyond(self, seq: int, timeout_s: float) -> int:
        """Wait until an event after `seq` exists or `timeout_s` passes; the latest seq seen."""
        self._ensure_loop()
        self._waiters += 1
        try:
            if self._poller is None or self._poller.done():
                self._poller = asyncio.get_running_loop().create_task(self._poll())
            else:
                assert self._kick is not None
                self._kick.set()  # the cached seq may be old: read it now
            deadline = asyncio.get_running_loop().time() + timeout_s
            while True:
                changed = self._changed
                assert changed is not None
                remaining = deadline - asyncio.get_running_loop().time()
                if self._latest > seq or remaining <= 0:
                    return self._latest
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), remaining)
        finally:
            self._waiters -= 1

    def _ensure_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new loop (tests): new primitives
            self._loop = loop
            self._changed = asyncio.Event()
            self._kick = asyncio.Event()
            self._poller = None

    async def _poll(self) -> None:
        assert self._kick is not None
        while self._waiters > 0:
            self._kick.clear()
            latest = await run_in_threadpool(self._read_latest)
            if latest != self._latest:
                self._latest = latest
                changed, self._changed = self._changed, asyncio.Event()
                assert changed is not None
                changed.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self._poll_s)
