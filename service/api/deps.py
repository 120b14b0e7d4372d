"""Dependency aliases shared by the routers.

The trivial ones are `async def`: FastAPI runs a plain `def` dependency in the thread pool, a
thread hop per dependency per request for no blocking work at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

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


async def get_now(request: Request) -> datetime:
    """The request's notion of now: the app's clock, which tests replace with a fake one."""
    now: datetime = request.app.state.clock()
    return now


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
Now = Annotated[datetime, Depends(get_now)]
# scope="function": the session is closed before the response is sent, so nothing can be written
# after a client already saw a 2xx. Endpoints commit explicitly inside their unit of work.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
