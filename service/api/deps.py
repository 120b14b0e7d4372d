"""What routes depend on: the settings, the request's clock, and the way to core.

A route reaches the database only by handing a core operation to `run` (one unit of work) or
`run_operation` (an operation that opens units itself, e.g. one that drives a migration on
after its commit): either is one hop to the thread pool per request. The unit is opened,
retried, committed and closed in `service.core.unit`, before the route builds its response, so
nothing can be written after a client saw a 2xx. Routes never see a session.

The trivial dependencies are `async def`: FastAPI runs a plain `def` dependency in the thread
pool, a thread hop per dependency per request for no blocking work at all.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Concatenate, ParamSpec, TypeVar

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from service.core import unit
from service.settings import Settings

P = ParamSpec("P")
T = TypeVar("T")
READS = ("GET", "HEAD")


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_now(request: Request) -> datetime:
    """The request's notion of now: the app's clock, which tests replace with a fake one."""
    now: datetime = request.app.state.clock()
    return now


def database(request: Request) -> unit.Database:
    db: unit.Database = request.app.state.db
    return db


async def run(
    request: Request,
    op: Callable[Concatenate[Session, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """`op(session, *args, **kwargs)` as the request's unit of work, in one hop to the thread
    pool. GET and HEAD get a read session (one snapshot, no write lock) that is rolled back.

    The alternative, a `def` endpoint with a session dependency, cost a hop to open the
    session, one for the endpoint, one to validate the response and one to close the session;
    on the hot routes those hops were a third of the event loop's time."""
    read = request.method in READS
    return await run_in_threadpool(
        unit.run, database(request), lambda session: op(session, *args, **kwargs), read=read
    )


async def run_operation(
    request: Request,
    op: Callable[Concatenate[unit.Database, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """`op(db, *args, **kwargs)`, a core operation that opens its units itself (through
    `service.core.unit`), in one hop to the thread pool."""
    return await run_in_threadpool(op, database(request), *args, **kwargs)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
Now = Annotated[datetime, Depends(get_now)]
