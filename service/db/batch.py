"""Writes collected in order and sent as one statement on PostgreSQL.

A write to a host touches several tables. Each write is a prebuilt statement whose parameters
carry a per-statement prefix. On PostgreSQL a batch runs as ONE statement (the writes as
data-modifying CTEs: they touch different rows, so one snapshot is right); elsewhere one statement
each. Statements are built once per shape and cached: executing a prebuilt statement reuses its
memoized cache key and compiled form (docs/adr/0003-cte-write-batches.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import BindParameter, Table, bindparam, cast, insert, select, union_all
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import UpdateBase

Build = Callable[[str], UpdateBase]


def param(prefix: str, name: str, type_: Any = None) -> BindParameter[Any]:
    """A bind parameter named for its statement's place in a batch."""
    return bindparam(prefix + name, type_=type_)


@functools.lru_cache(maxsize=64)
def _insert_rows_w(table: Table, columns: tuple[str, ...], n: int) -> Build:
    """INSERT ... SELECT of n rows of typed parameters (a multi-row VALUES would not be
    cacheable: it would be compiled again on every execution). Each value is CAST to its
    column's type: a NULL in a UNION's SELECT list has no type of its own on PostgreSQL."""

    def typed(x: str, i: int, col: str) -> Any:
        kind = table.c[col].type
        return cast(param(x, f"r{i}_{col}", kind), kind).label(col)

    def build(x: str) -> UpdateBase:
        rows = [select(*(typed(x, i, col) for col in columns)) for i in range(n)]
        return insert(table).from_select(list(columns), rows[0] if n == 1 else union_all(*rows))

    return build


class WriteBatch:
    """Writes collected in order and sent together by `execute` (see above)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.items: list[tuple[Build, dict[str, Any], Table | None, Sequence[dict[str, Any]]]] = []

    def add(self, build: Build, params: dict[str, Any]) -> None:
        self.items.append((build, params, None, ()))

    def add_rows(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        """Rows for one table, all with the same keys."""
        if rows:
            columns = tuple(rows[0])
            params = {f"r{i}_{c}": row[c] for i, row in enumerate(rows) for c in columns}
            self.items.append((_insert_rows_w(table, columns, len(rows)), params, table, rows))

    def execute(self) -> int:
        """Send the writes; returns the row count of the last one."""
        if not self.items:
            return 0
        conn = self.session.connection()
        if conn.dialect.name == "postgresql":
            stmt = _combined(tuple(item[0] for item in self.items))
            params = {
                f"w{i}_{k}": v for i, (_, p, _t, _r) in enumerate(self.items) for k, v in p.items()
            }
            return int(conn.execute(stmt, params).rowcount)
        rowcount = 0
        for build, p, table, rows in self.items:
            if table is not None:
                rowcount = int(conn.execute(_insert(table), list(rows)).rowcount)
            else:
                params = {f"w_{k}": v for k, v in p.items()}
                rowcount = int(conn.execute(alone(build), params).rowcount)
        return rowcount


@functools.lru_cache(maxsize=16)
def _insert(table: Table) -> UpdateBase:
    return insert(table)


@functools.lru_cache(maxsize=256)
def alone(build: Build) -> UpdateBase:
    """A batch statement sent on its own (parameters prefixed `w_`)."""
    return build("w_")


@functools.lru_cache(maxsize=256)
def _combined(builds: tuple[Build, ...]) -> UpdateBase:
    *first, last = (b(f"w{i}_") for i, b in enumerate(builds))
    stmt = last
    for i, s in enumerate(first):
        stmt = stmt.add_cte(s.cte(f"w{i}"))
    return stmt
