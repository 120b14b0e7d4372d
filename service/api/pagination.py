"""Query parameters and the next-cursor helper for paginated lists."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Protocol

from fastapi import Query

from service.db.pagination import encode_cursor
from service.settings import Settings

LimitQuery = Annotated[int | None, Query(ge=1, le=1000, description="Page size (capped)")]
CursorQuery = Annotated[
    str | None, Query(max_length=512, description="The next_cursor of the previous page")
]


def page_size(limit: int | None, settings: Settings) -> int:
    """The client's limit, else the default, never above the configured maximum."""
    return min(limit or settings.page_limit_default, settings.page_limit_max)


class Keyed(Protocol):
    @property
    def created_at(self) -> datetime: ...

    @property
    def id(self) -> str: ...


def next_cursor(rows: Sequence[Keyed], more: bool) -> str | None:
    if not more or not rows:
        return None
    last = rows[-1]
    return encode_cursor(last.created_at, last.id)
