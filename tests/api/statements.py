"""Counting the SQL statements a request sends, to pin query budgets (no N+1) in tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import event

from tests.api.client import ApiClient

T = TypeVar("T")


def count_statements(client: ApiClient, call: Callable[[], T]) -> tuple[int, T]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.startswith("BEGIN"):  # SQLite's explicit BEGIN (see db/session.py)
            seen.append(statement)

    engine = client.app.state.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        r = call()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(seen), r
