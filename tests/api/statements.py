"""Counting the SQL statements a request sends, to pin query budgets (no N+1) in tests: through
the engine, and on the worker's plain connections (`db/raw.py`: the hot routes' statements)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from sqlalchemy import event

from service.db import raw
from tests.api.client import ApiClient

T = TypeVar("T")
_PLAIN = (
    (raw.PlainTransaction, "rows"),
    (raw.PlainTransaction, "execute"),
    (raw.PlainTransaction, "execute_many"),
    (raw.PlainConnections, "one_row"),
)


def count_statements(client: ApiClient, call: Callable[[], T]) -> tuple[int, T]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.startswith("BEGIN"):  # SQLite's explicit BEGIN (see db/session.py)
            seen.append(statement)

    def counted(method: Callable[..., Any]) -> Callable[..., Any]:
        async def send(self: object, stmt: Any, *args: Any) -> Any:
            seen.append(str(stmt))
            return await method(self, stmt, *args)

        return send

    engine = client.app.state.engine
    event.listen(engine, "before_cursor_execute", count)
    with pytest.MonkeyPatch.context() as patch:
        for owner, name in _PLAIN:
            patch.setattr(owner, name, counted(getattr(owner, name)))
        try:
            r = call()
        finally:
            event.remove(engine, "before_cursor_execute", count)
    return len(seen), r
