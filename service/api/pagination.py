"""Query parameters of paginated lists (core makes the pages and their next cursors)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from service.settings import Settings

LimitQuery = Annotated[int | None, Query(ge=1, le=1000, description="Page size (capped)")]
CursorQuery = Annotated[
    str | None, Query(max_length=512, description="The next_cursor of the previous page")
]


def page_size(limit: int | None, settings: Settings) -> int:
    """The client's limit, else the default, never above the configured maximum."""
    return min(limit or settings.page_limit_default, settings.page_limit_max)
