"""Dependency aliases shared by the routers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service.db.session import session_scope
from service.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    yield from session_scope(request.app.state.sessionmaker)


def get_now(request: Request) -> datetime:
    """The request's notion of now: the app's clock, which tests replace with a fake one."""
    now: datetime = request.app.state.clock()
    return now


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
Now = Annotated[datetime, Depends(get_now)]
# scope="function": the session is closed before the response is sent, so nothing can be written
# after a client already saw a 2xx. Endpoints commit explicitly inside their unit of work.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
