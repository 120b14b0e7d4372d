"""Plain psycopg connections on the event loop for the hottest round trips (PostgreSQL only):
a lease renewal, the token lookup before it, and a settled batch report's short transaction.

Why (issue 25): an agent's lease renewal and the token lookup before it are one indexed
statement each, and what surrounded each statement cost several times the statement itself:
SQLAlchemy's machinery (a session, the pool's checkout with its pre-ping round trip, the ORM's
compile and result steps: ~100 us of CPU against ~15 us for psycopg alone), then the hop to the
thread pool and back (~40 us more, twice a renewal, and the GIL handed over each time). Here the
statements stay SQLAlchemy Core (compiled once, for the engine's dialect, to their SQL text and
their constant parameters) and run on psycopg's asyncio connections, awaited on the request's
own event loop.

Their commits are asynchronous (`synchronous_commit=off`, docs/adr/0009): the statements here
are a token lookup (a read) and a held lease's renewal, which the agent's next renewal replaces
within ~10 s. Waiting for the WAL flush cost a renewal 0.6 ms at the median and 10-50 ms in the
tail on this machine's disk, against 0.04 ms without; a database crash can lose at most the
last ~0.6 s of renewals (3 x wal_writer_delay), which leaves each such lease one renewal
shorter, never inconsistent. Nothing that moves memory, a judgement or an event runs here.

`PlainConnections` belongs to one worker's `Database`; the app's lifespan opens its pool on the
worker's event loop and closes it on shutdown (psycopg_pool's `AsyncConnectionPool`: a
connection that broke is replaced, never lent again). Until it is open (an app run without its
lifespan, SQLite), or when a connection fails or none is free within CHECKOUT_TIMEOUT_S, a call
raises `Unavailable` ("this path is not available now"): the caller takes the ordinary path in
the thread pool, which reports a database that is away as it always did.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

# At most this many plain connections per worker (requests beyond wait for one); an idle one is
# closed after IDLE_S; a request that waits longer than CHECKOUT_TIMEOUT_S (the database away,
# every connection busy) takes the ordinary path instead.
MAX_CONNECTIONS = 8
IDLE_S = 300.0
CHECKOUT_TIMEOUT_S = 2.0
_DIALECT = psycopg_dialect()  # type: ignore[no-untyped-call]
T = TypeVar("T")


class Unavailable(Exception):
    """No plain connection now (not opened on this loop, the database away, the connection
    broke, a statement timed out): the caller takes the ordinary path, which reports it as it
    always did."""


@dataclass(frozen=True, slots=True)
class Compiled:
    """A Core statement as the SQL text psycopg runs and the parameters it fixes itself."""

    sql: str
    constants: Mapping[str, Any]

    def params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {**self.constants, **values}


_COMPILED: dict[int, tuple[ClauseElement, Compiled]] = {}


def compiled(stmt: ClauseElement) -> Compiled:
    """`stmt` (a module constant) compiled once for psycopg's PostgreSQL dialect."""
    hit = _COMPILED.get(id(stmt))
    if hit is None or hit[0] is not stmt:
        c = cast(SQLCompiler, stmt.compile(dialect=_DIALECT))
        params = c.construct_params(_check=False) or {}
        constants = {k: v for k, v in params.items() if v is not None}
        hit = _COMPILED[id(stmt)] = (stmt, Compiled(str(c), constants))
    return hit[1]


class PlainTransaction:
    """The statements of one transaction on a plain connection (`PlainConnections.transaction`)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    async def rows(self, stmt: ClauseElement, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        c = compiled(stmt)
        cursor = await self._conn.execute(c.sql, c.params(values))
        return await cursor.fetchall()

    async def execute_many(self, stmt: ClauseElement, values: Sequence[Mapping[str, Any]]) -> None:
        c = compiled(stmt)
        async with self._conn.cursor() as cursor:
            await cursor.executemany(c.sql, [c.params(v) for v in values])


class PlainConnections:
    """A worker's small pool of autocommit asyncio connections, beside its engine's own."""

    def __init__(self, engine: Engine) -> None:
        url = engine.url.set(drivername="postgresql")
        self._conninfo = (
            url.render_as_string(hide_password=False)
            if engine.dialect.name == "postgresql"
            else None
        )
        self._pool: AsyncConnectionPool | None = None

    @property
    def available(self) -> bool:
        return self._pool is not None

    async def open(self) -> None:
        """Open the pool on the running event loop (the worker's: its connections belong to it);
        nothing for a database other than PostgreSQL."""
        if self._conninfo is None or self._pool is not None:
            return
        pool = AsyncConnectionPool(
            self._conninfo,
            min_size=0,
            max_size=MAX_CONNECTIONS,
            max_idle=IDLE_S,
            kwargs={"autocommit": True, "options": "-c synchronous_commit=off"},
            timeout=CHECKOUT_TIMEOUT_S,
            open=False,
            name="numa-balloon-plain",
        )
        await pool.open()
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def one_row(
        self, stmt: ClauseElement, values: Mapping[str, Any]
    ) -> tuple[Any, ...] | None:
        """The first row `stmt` returns (None: no row), in one round trip (psycopg prepares it
        on the server once a connection has run it a few times)."""
        pool = self._pool
        if pool is None:
            raise Unavailable("no plain connections on this worker's event loop")
        c = compiled(stmt)
        try:
            async with pool.connection() as conn:
                cursor = await conn.execute(c.sql, c.params(values))
                row: tuple[Any, ...] | None = await cursor.fetchone()
                return row
        except (psycopg.Error, PoolTimeout) as exc:
            raise Unavailable(str(exc)) from exc

    async def transaction(
        self, work: Callable[[PlainTransaction], Awaitable[T | None]]
    ) -> T | None:
        """`work`'s statements in one transaction: committed when it answers, rolled back when
        it answers None (it found the path does not apply: the caller takes its ordinary one)."""
        pool = self._pool
        if pool is None:
            raise Unavailable("no plain connections on this worker's event loop")
        try:
            async with pool.connection() as conn:
                async with conn.transaction():
                    out = await work(PlainTransaction(conn))
                    if out is None:
                        raise psycopg.Rollback
                return out
        except (psycopg.Error, PoolTimeout) as exc:
            raise Unavailable(str(exc)) from exc
