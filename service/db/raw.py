"""Plain psycopg connections for the hottest one-statement round trips (PostgreSQL only).

Why (issue 25): an agent's lease renewal and the token lookup before it are one indexed
statement each, and SQLAlchemy's machinery around a statement (a session, the pool's checkout
with its pre-ping round trip, the ORM's compile and result steps) cost several times the
statement: ~100 us of CPU per statement against ~15 us for psycopg alone. The statements stay
SQLAlchemy Core (compiled once here, for the engine's dialect, to their SQL text and their
constant parameters); only their execution skips the layers.

Each engine gets a small pool of autocommit connections of its own (`pool_for`, psycopg_pool's
`ConnectionPool`: a connection that broke is replaced, never lent again), closed when the engine
is disposed or collected. A failing connection, or none free within CHECKOUT_TIMEOUT_S, raises
`Unavailable` ("this path is not available now"): the caller takes the ordinary path, which
reports a database that is away as it always did.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout
from sqlalchemy import Engine, event
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

# At most this many plain connections per worker (the thread pool's requests beyond wait for
# one); an idle one is closed after IDLE_S; a request that waits longer than CHECKOUT_TIMEOUT_S
# (the database away, every connection busy) takes the ordinary path instead.
MAX_CONNECTIONS = 8
IDLE_S = 300.0
CHECKOUT_TIMEOUT_S = 2.0
_DIALECT = psycopg_dialect()  # type: ignore[no-untyped-call]


class Unavailable(Exception):
    """The plain connection failed (the database is away, the connection broke, a statement
    timed out): the caller takes the ordinary path, which reports it as it always did."""


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


class RawPool:
    """A small pool of autocommit connections (psycopg_pool's, which returns a connection that
    broke to nobody and replaces it) kept beside the engine's own."""

    def __init__(self, conninfo: str) -> None:
        self._pool = ConnectionPool(
            conninfo,
            min_size=0,
            max_size=MAX_CONNECTIONS,
            max_idle=IDLE_S,
            kwargs={"autocommit": True},
            timeout=CHECKOUT_TIMEOUT_S,
            open=True,
            name="numa-balloon-raw",
        )

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self._pool.connection() as conn:
            yield conn

    def close(self) -> None:
        self._pool.close()


_POOLS: weakref.WeakKeyDictionary[Engine, RawPool] = weakref.WeakKeyDictionary()
_POOLS_LOCK = threading.Lock()


def pool_for(engine: Engine) -> RawPool | None:
    """The engine's pool of plain connections; None when the engine is not PostgreSQL."""
    if engine.dialect.name != "postgresql":
        return None
    pool = _POOLS.get(engine)
    if pool is not None:
        return pool
    with _POOLS_LOCK:
        pool = _POOLS.get(engine)
        if pool is None:
            url = engine.url.set(drivername="postgresql")
            pool = RawPool(url.render_as_string(hide_password=False))
            _POOLS[engine] = pool
            event.listen(engine, "engine_disposed", lambda _engine: pool.close())
            weakref.finalize(engine, pool.close)
    return pool


def one_row(
    pool: RawPool, stmt: ClauseElement, values: Mapping[str, Any]
) -> tuple[Any, ...] | None:
    """The first row `stmt` returns (None: no row), in one round trip (psycopg prepares it on
    the server once a connection has run it a few times)."""
    c = compiled(stmt)
    try:
        with pool.connection() as conn:
            row: tuple[Any, ...] | None = conn.execute(c.sql, c.params(values)).fetchone()
            return row
    except (psycopg.Error, PoolTimeout) as exc:
        raise Unavailable(str(exc)) from exc
