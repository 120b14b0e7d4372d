"""The unit of work: the one place a request's transaction is opened, committed and closed.

`write` opens a session from the write factory (through the worker's database gate), runs the
work with the deadlock/serialization retries of `service.db.retry`, commits and closes; `read`
does the same on a read session (one snapshot, no write lock) and rolls back. Work that decides
it changed nothing (a dry run, a replayed create) calls `discard`, and its unit rolls back
instead of committing. The commit happens inside the unit, so a failed commit becomes the
request's error, never a failure after the client already got its 2xx.

Nothing else in core commits a request's work. The operations that legitimately run several
transactions (a migration's `drive`, an evacuation, the sweeper) take a session from `several`
(or, the sweeper, the write factory) and commit each step themselves.

Routers never see a session: `service.api.deps.run` hands a core operation to `run` in one hop
to the thread pool, and `service.api.deps.run_operation` hands operations of several units the
`Database` they open them from.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from service.db.raw import PlainConnections, Unavailable
from service.db.retry import is_retryable, run_with_retries
from service.db.session import (
    make_engine,
    make_lookup_sessionmaker,
    make_read_sessionmaker,
    make_sessionmaker,
    session_scope,
)
from service.errors import Contended

T = TypeVar("T")
# The target writes' plain connections per worker: a host's writes serialize on its lock, so
# more would mostly wait there; past them a write waits for one (`raw.CHECKOUT_TIMEOUT_S`), then
# takes the thread pool's path.
WRITE_CONNECTIONS = 4
_DISCARD = "numa_balloon_discard"
_scope = contextmanager(session_scope)


@dataclass(frozen=True)
class Database:
    """Where a worker's sessions come from: writes, reads (GET and HEAD: one snapshot, no write
    lock), one-statement lookups (a token before each request), the plain connections of the
    hottest statements (`on_plain`: the renewals' and settled reports', and the target writes'
    whose commits wait for the WAL flush), and the gate that bounds the sessions open at once (None:
    unbounded)."""

    engine: Engine
    write_factory: sessionmaker[Session]
    read_factory: sessionmaker[Session]
    lookup_factory: sessionmaker[Session]
    plain: PlainConnections
    plain_writes: PlainConnections
    gate: threading.BoundedSemaphore | None = None


def open_database(url: str, concurrency: int = 0) -> Database:
    """The engine and the session factories of one worker; `concurrency` sessions at most open
    at once (0: no bound)."""
    engine = make_engine(url)
    return Database(
        engine=engine,
        write_factory=make_sessionmaker(engine),
        read_factory=make_read_sessionmaker(engine),
        lookup_factory=make_lookup_sessionmaker(engine),
        plain=PlainConnections(engine),
        plain_writes=PlainConnections(
            engine,
            name="numa-balloon-plain-writes",
            max_connections=WRITE_CONNECTIONS,
            durable=True,
        ),
        gate=threading.BoundedSemaphore(concurrency) if concurrency else None,
    )


def discard(session: Session) -> None:
    """The unit changed nothing that should stay (a dry run, a replay): roll back, not commit."""
    session.info[_DISCARD] = True


def run(db: Database, work: Callable[[Session], T], *, read: bool = False) -> T:
    """`work` as one unit of work: opened, retried on a deadlock or serialization failure,
    committed (rolled back for a read or a discarded unit), closed. A retry runs `work` again
    from the start on a rolled-back session; retries exhausted are a 409 `Contended`."""
    factory = db.read_factory if read else db.write_factory
    with _scope(factory, db.gate) as session:

        def attempt() -> T:
            session.info.pop(_DISCARD, None)
            result = work(session)
            if read or session.info.pop(_DISCARD, False):
                session.rollback()
            else:
                session.commit()
            return result

        return _contended_when_exhausted(session, attempt, NOTHING_CHANGED)


def write(db: Database, work: Callable[[Session], T]) -> T:
    """`work` in one committed unit (see `run`)."""
    return run(db, work)


def read(db: Database, work: Callable[[Session], T]) -> T:
    """`work` in one read unit: a read session, rolled back (see `run`)."""
    return run(db, work, read=True)


def lookup(db: Database, work: Callable[[Session], T]) -> T:
    """A one-statement read before the request's own unit (a token by its digest): on
    PostgreSQL in autocommit, one round trip. Not gated: it holds no lock and waits on none."""
    with db.lookup_factory() as session:
        return work(session)


def one_statement(db: Database, work: Callable[[Session], T]) -> T | None:
    """A unit that is one writing statement, its own transaction: on PostgreSQL in autocommit
    (one round trip: no BEGIN, no COMMIT), through the worker's gate, retried like `run`. On
    SQLite None without running `work`: the caller runs its ordinary unit instead."""
    if db.engine.dialect.name != "postgresql":
        return None
    with _scope(db.lookup_factory, db.gate) as session:
        return _contended_when_exhausted(session, lambda: work(session), NOTHING_CHANGED)


def several(db: Database, work: Callable[[Session], T]) -> T:
    """A session for an operation that commits several transactions itself (a migration's
    `drive`, an evacuation): whatever it leaves open is rolled back. A deadlock or
    serialization failure runs it again from the start, so it must be safe to repeat (those
    operations re-read their state under their locks)."""
    with _scope(db.write_factory, db.gate) as session:
        return _contended_when_exhausted(session, lambda: work(session), STEPS_KEPT)


class NotNow:
    """`on_plain`'s answer when the plain path is not available now."""


NOT_NOW: Final = NotNow()


async def on_plain(
    db: Database, work: Callable[[PlainConnections], Awaitable[T]], *, durable: bool = False
) -> T | NotNow:
    """`work` on the worker's plain connections (one statement, or a short transaction),
    awaited on the event loop (no hop to the thread pool: `db/raw.py`). `NOT_NOW` when that
    path is not available now (no PostgreSQL, no pool opened on this loop, no connection free
    within its checkout timeout, the connection failing): the caller then takes its ordinary
    path, in the thread pool, which reports a database that is away as it always did.

    It does not take the worker's gate: the gate bounds threads that would fight over the GIL,
    and a statement awaited on the loop holds no thread; the pool's own size bounds its
    connections. (Taking a slot without waiting sent a burst of renewals to the slower thread
    path once four were in flight, which made the burst last longer.)

    `durable`: on the target writes' connections, whose commits wait for the WAL flush; a write
    waiting there on a host's lock holds none of the renewals' connections."""
    plain = db.plain_writes if durable else db.plain
    if not plain.available:
        return NOT_NOW
    try:
        return await work(plain)
    except Unavailable:
        return NOT_NOW


NOTHING_CHANGED = "nothing was changed, retry"
STEPS_KEPT = "the steps committed before stay; retry"


def _contended_when_exhausted(session: Session, attempt: Callable[[], T], outcome: str) -> T:
    try:
        return run_with_retries(session, attempt)
    except DBAPIError as exc:
        if is_retryable(exc):  # still colliding after the retries: the client may try again
            raise Contended(
                f"concurrent requests on the same hosts kept colliding; {outcome}"
            ) from exc
        raise
