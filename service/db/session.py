"""Engines and sessions with write transactions that serialize per host.

PostgreSQL: writers lock the host row and its pnodes (`SELECT ... FOR UPDATE`: see
`service.db.loaders.host_stmt` and `service.db.locks.lock_hosts`).
SQLite ignores `FOR UPDATE` and pysqlite defers `BEGIN`, so a check-then-write would race; we use
SQLAlchemy's documented recipe (driver-level autocommit off, `BEGIN IMMEDIATE` on begin) so every
transaction takes the database write lock up front. Read-only requests (GET, HEAD) use
`make_read_sessionmaker`: on SQLite a deferred `BEGIN`, so with WAL they read a snapshot instead of
queueing behind every writer. The CHECK constraint on pnodes is the second line of defence on both.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

READ_ONLY = "numa_balloon_read_only"


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=NullPool if ":memory:" not in url else None,
            **kwargs,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA busy_timeout = 30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            read_only = conn.get_execution_options().get(READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    _cache_fixed_shape_statements()
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    return create_engine(url, **kwargs)


# Our write batches are one statement of data-modifying CTEs with ~50-150 parameters, compiled
# once per shape by SQLAlchemy. psycopg re-parses any statement over 4096 bytes or 50 parameters
# on every execution (its guard against ORM-made VALUES lists of ever-changing length): about a
# tenth of a target change's CPU, spent under the host lock. Its cache stays an LRU of 128
# entries. The knobs are psycopg internals: if they move, we lose the speed, not correctness
# (tests/api/test_hot_paths.py notices).
STATEMENT_CACHE_MAX_BYTES = 32768
STATEMENT_CACHE_MAX_PARAMS = 2000


def _cache_fixed_shape_statements() -> None:
    try:
        import psycopg._queries as queries
    except ImportError:
        return
    for name, limit in (
        ("MAX_CACHED_STATEMENT_LENGTH", STATEMENT_CACHE_MAX_BYTES),
        ("MAX_CACHED_STATEMENT_PARAMS", STATEMENT_CACHE_MAX_PARAMS),
    ):
        current = getattr(queries, name, None)
        if isinstance(current, int) and current < limit:
            setattr(queries, name, limit)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


def make_read_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions for requests that never write, reading ONE snapshot across their statements.

    A GET reads in several statements (domains, then their backing); under READ COMMITTED a
    migration committing between two of them mixed the old host's shape with the new host's
    rows. PostgreSQL: REPEATABLE READ (a read-only transaction there never fails to serialize).
    SQLite: a deferred `BEGIN` under WAL already reads one snapshot, and needs no write lock."""
    options: dict[str, Any] = {READ_ONLY: True}
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = "REPEATABLE READ"
    return make_sessionmaker(engine.execution_options(**options))


def make_lookup_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions for one-statement lookups (a token by digest, before each request): on
    PostgreSQL in autocommit, so the lookup is one round trip, not BEGIN, SELECT and ROLLBACK.
    SQLite keeps the read sessions' deferred BEGIN (no write lock either way)."""
    if engine.dialect.name == "postgresql":
        return make_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"))
    return make_read_sessionmaker(engine)


def session_scope(
    factory: sessionmaker[Session], gate: threading.BoundedSemaphore | None = None
) -> Iterator[Session]:
    """One session per unit of work. The unit (service/core/unit.py) commits; this only rolls
    back what it left open.

    `gate` bounds the sessions open at once; a request waits for it before touching the database
    (so holding no lock while it waits: no deadlock with the holders)."""
    if gate is not None:
        gate.acquire()
    try:
        session = factory()
        try:
            yield session
        finally:
            if session.in_transaction():
                session.rollback()
            session.close()
    finally:
        if gate is not None:
            gate.release()
