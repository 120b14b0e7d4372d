"""Dependency aliases shared by the routers.

The trivial ones are `async def`: FastAPI runs a plain `def` dependency in the thread pool, a
thread hop per dependency per request for no blocking work at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from service.db.retry import run_with_retries
from service.db.session import session_scope
from service.settings import Settings


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """GET and HEAD never write: they get a read session (no SQLite write lock)."""
    state = request.app.state
    factory = state.read_sessionmaker if request.method in ("GET", "HEAD") else state.sessionmaker
    yield from session_scope(factory, state.db_gate)


T = TypeVar("T")
_scope = contextmanager(session_scope)


async def run_db(request: Request, work: Callable[[Session], T]) -> T:
    """Run a unit of work (open, work, commit, close) in one hop to the thread pool.

    The alternative, a `def` endpoint with `SessionDep`, costs a hop to open the session, one for
    the endpoint, one to validate the response and one to close the session; on the hot routes
    those hops were a third of the event loop's time. `work` commits; whatever it leaves open is
    rolled back. GET and HEAD get a read session, as with `SessionDep`."""
    state = request.app.state
    factory = state.read_sessionmaker if request.method in ("GET", "HEAD") else state.sessionmaker

    def unit() -> T:
        with _scope(factory, state.db_gate) as session:
            return run_with_retries(session, lambda: work(session))

    return await run_in_threadpool(unit)


async def get_now(request: Request) -> datetime:
    """The request's notion of now: the app's clock, which tests replace with a fake one."""
    now: datetime = request.app.state.clock()
    return now


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
Now = Annotated[datetime, Depends(get_now)]
# scope="function": the session is closed before the response is sent, so nothing can be written
# after a client already saw a 2xx. Endpoints commit explicitly inside their unit of work.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
