"""Plain psycopg connections on the event loop for the hottest round trips (PostgreSQL only):
a lease renewal, the token lookup before it, a settled batch report's short transaction, and
(on a pool of their own, whose commits wait for the WAL flush) the target writes.

Why (issue 25): an agent's lease renewal and the token lookup before it are one indexed
statement each, and what surrounded each statement cost several times the statement itself:
SQLAlchemy's machinery (a session, the pool's checkout with its pre-ping round trip, the ORM's
compile and result steps: ~100 us of CPU against ~15 us for psycopg alone), then the hop to the
thread pool and back (~40 us more, twice a renewal, and the GIL handed over each time). Here the
statements stay SQLAlchemy Core (compiled once, for the engine's dialect, to their SQL text and
their constant parameters) and run on psycopg's asyncio connections, awaited on the request's
own event loop.

The renewals' pool commits asynchronously (`synchronous_commit=off`, docs/adr/0009): its
statements are a token lookup (a read), a settled report's observation and a held lease's
renewal, which the agent's next renewal replaces
within ~10 s. Waiting for the WAL flush cost a renewal 0.6 ms at the median and 10-50 ms in the
tail on this machine's disk, against 0.04 ms without; a database crash can lose at most the
last ~0.6 s of renewals (3 x wal_writer_delay), which leaves each such lease one renewal
shorter, never inconsistent. Nothing that moves memory, a judgement or an event runs there: the
target writes run on a durable pool (`durable=True`, docs/adr/0010).

`PlainConnections` belongs to one worker's `Database`; the app's lifespan opens its pool on the
worker's event loop and closes it on shutdown (psycopg_pool's `AsyncConnectionPool`: a
connection that broke is replaced, never lent again). Until it is open (an app run without its
lifespan, SQLite), or when a connection fails or none is free within CHECKOUT_TIMEOUT_S, a call
raises `Unavailable` ("this path is not available now"): the caller takes the ordinary path in
the thread pool, which reports a database that is away as it always did.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from service.errors import ServiceUnavailable

# At most this many plain connections per worker (requests beyond wait for one); an idle one is
# closed after IDLE_S; a request that waits longer than CHECKOUT_TIMEOUT_S (the database away,
# every connection busy) takes the ordinary path instead.
MAX_CONNECTIONS = 8
IDLE_S = 300.0
CHECKOUT_TIMEOUT_S = 2.0
COMMIT_UNKNOWN = (
    "the database connection failed while the change was committing: it may or may not have "
    "been applied; read it before retrying"
)
_ASYNC_COMMIT = {"options": "-c synchronous_commit=off"}
# A durable write waits at most this long for a host's lock, then takes the ordinary path (in
# a thread, where it may wait on): a busy host does not hold the few durable connections.
LOCK_TIMEOUT_MS = 1000
_DURABLE = {"options": f"-c lock_timeout={LOCK_TIMEOUT_MS}"}
_DIALECT = psycopg_dialect()  # type: ignore[no-untyped-call]
T = TypeVar("T")
log = logging.getLogger(__name__)


class Unavailable(Exception):
    """No plain connection now (not opened on this loop, the database away, the connection
    broke, a statement timed out): the caller takes the ordinary path, which reports it as it
    always did."""


@dataclass(frozen=True, slots=True)
class Compiled:
    """A Core statement as the SQL text psycopg runs, the parameters it fixes itself and the
    bind processors of its typed parameters (a JSON value wrapped for psycopg, a timestamp made
    aware), as SQLAlchemy's execution would apply them."""

    sql: str
    constants: Mapping[str, Any]
    processors: Mapping[str, Callable[[Any], Any]]
    compiler: SQLCompiler | None  # kept only for a statement with expanding (IN) parameters

    def params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        out = {**self.constants, **values}
        for name, process in self.processors.items():
            if name in out:
                out[name] = process(out[name])
        return out

    def expanded(self, values: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The SQL and parameters for these values: an IN list's values as one parameter each."""
        if self.compiler is None:
            return self.sql, self.params(values)
        state = self.compiler.construct_expanded_state({**self.constants, **values})
        params = dict(state.parameters)
        # The state's processors are the expanded parameters'; the others keep their names.
        for name, process in (*self.processors.items(), *state.processors.items()):
            if name in params:
                params[name] = process(params[name])
        return state.statement, params


# At most this many statements compiled (a batch's statements are built per shape and cached
# with a bound, so a long-lived worker meets new ones; the oldest compilations are forgotten).
_COMPILED_MAX = 512
_COMPILED: dict[int, tuple[ClauseElement, Compiled]] = {}


def compiled(stmt: ClauseElement) -> Compiled:
    """`stmt` (a module constant, or a statement cached per shape) compiled once for psycopg's
    PostgreSQL dialect."""
    hit = _COMPILED.get(id(stmt))
    if hit is None or hit[0] is not stmt:
        c = cast(SQLCompiler, stmt.compile(dialect=_DIALECT))
        params = c.construct_params(_check=False) or {}
        constants = {k: v for k, v in params.items() if v is not None}
        processors = {
            name: process
            for name, bind in c.binds.items()
            if (process := bind.type.dialect_impl(_DIALECT).bind_processor(_DIALECT)) is not None
        }
        expanding = any(bind.expanding for bind in c.binds.values())
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.clear()
        done = Compiled(str(c), constants, processors, c if expanding else None)
        hit = _COMPILED[id(stmt)] = (stmt, done)
    return hit[1]


def _unavailable(exc: Exception) -> Unavailable:
    """The error that sends a request to its ordinary path. The database away, a lock or a
    connection not had in time, a deadlock: expected, and the ordinary path reports or retries
    them. Anything else (a statement the server refused) is a defect that the fallback would
    hide: logged."""
    if not isinstance(exc, (psycopg.OperationalError, PoolTimeout)):
        log.warning("a plain connection's statement failed: %r; taking the ordinary path", exc)
    return Unavailable(str(exc))


class PlainTransaction:
    """The statements of one transaction on a plain connection (`PlainConnections.transaction`)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    async def rows(self, stmt: ClauseElement, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        sql, params = compiled(stmt).expanded(values)
        cursor = await self._conn.execute(sql, params)
        return await cursor.fetchall()

    async def execute(self, stmt: ClauseElement, values: Mapping[str, Any]) -> int:
        """A statement that returns no rows; its row count."""
        sql, params = compiled(stmt).expanded(values)
        cursor = await self._conn.execute(sql, params)
        return cursor.rowcount

    async def execute_many(self, stmt: ClauseElement, values: Sequence[Mapping[str, Any]]) -> int:
        """One statement for each set of values (psycopg pipelines them); the rows it counted."""
        c = compiled(stmt)
        if c.compiler is not None:
            raise ValueError("an IN list's values cannot vary between a batch's rows")
        async with self._conn.cursor() as cursor:
            await cursor.executemany(c.sql, [c.params(v) for v in values])
            return cursor.rowcount


class PlainConnections:
    """A worker's small pool of autocommit asyncio connections, beside its engine's own.

    `durable`: commits wait for the WAL flush (the target writes' pool: memory moves there);
    otherwise they do not (the renewals' and settled reports' pool, ADR 0009)."""

    def __init__(
        self,
        engine: Engine,
        *,
        name: str = "numa-balloon-plain",
        max_connections: int = MAX_CONNECTIONS,
        durable: bool = False,
    ) -> None:
        self._name, self._max, self._durable = name, max_connections, durable
        # Called after each commit of `transaction` (the app's event hub: waiters read the log).
        self.after_commit: list[Callable[[], None]] = []
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
            max_size=self._max,
            max_idle=IDLE_S,
            kwargs={"autocommit": True, **(_DURABLE if self._durable else _ASYNC_COMMIT)},
            timeout=CHECKOUT_TIMEOUT_S,
            open=False,
            name=self._name,
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
            raise _unavailable(exc) from exc

    async def transaction(
        self, work: Callable[[PlainTransaction], Awaitable[T | None]]
    ) -> T | None:
        """`work`'s statements in one transaction: committed when it answers, rolled back when
        it answers None (it found the path does not apply: the caller takes its ordinary one).
        A failure before the commit is `Unavailable` (nothing was written: the caller may take
        its ordinary path); on a durable pool, a failure during the commit is a 503 that says
        the write may have been applied."""
        pool = self._pool
        if pool is None:
            raise Unavailable("no plain connections on this worker's event loop")
        committing = False
        try:
            async with pool.connection() as conn, conn.transaction():
                out = await work(PlainTransaction(conn))
                if out is None:
                    raise psycopg.Rollback
                committing = True
        except (psycopg.Error, PoolTimeout) as exc:
            if committing and self._durable:
                # The write may have committed: taking the other path would write it twice.
                raise ServiceUnavailable(COMMIT_UNKNOWN) from exc
            raise _unavailable(exc) from exc
        if out is not None:
            for hook in self.after_commit:
                try:
                    hook()
                except Exception:  # the write committed: its answer must not become a 500
                    log.exception("an after-commit hook of %s failed", self._name)
        return out
