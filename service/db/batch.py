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

from sqlalchemy import BindParameter, Connection, Table, bindparam, cast, insert, select, union_all
from sqlalchemy.sql.dml import UpdateBase

from service.db.raw import PlainTransaction
from service.errors import Conflict

Build = Callable[[str], UpdateBase]
Params = dict[str, Any]
# A statement sent on its own: its parameters (a list: one executemany) and the row count it
# must find (None: any).
Sent = tuple[UpdateBase, Params | list[Params], int | None]


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
    """Writes collected in order and sent together by `execute` (see above), after the
    statements that must go on their own (`send`: an INSERT whose rows a sibling CTE would
    delete, an executemany, an IN list), in the order they were collected.

    The same writes go through a session's connection (`execute`) or a plain connection on the
    event loop (`execute_plain`, PostgreSQL only: `core/target_on_loop.py`)."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.sent: list[Sent] = []
        self.items: list[tuple[Build, Params, Table | None, Sequence[Params]]] = []

    def send(
        self, stmt: UpdateBase, params: Params | list[Params], *, expect: int | None = None
    ) -> None:
        """A statement sent on its own before the batch; `expect`: the rows it must find, else
        `Conflict` (a row changed while its host was being written)."""
        self.sent.append((stmt, params, expect))

    def add(self, build: Build, params: Params) -> None:
        self.items.append((build, params, None, ()))

    def add_rows(self, table: Table, rows: Sequence[Params]) -> None:
        """Rows for one table, all with the same keys."""
        if rows:
            columns = tuple(rows[0])
            params = {f"r{i}_{c}": row[c] for i, row in enumerate(rows) for c in columns}
            self.items.append((_insert_rows_w(table, columns, len(rows)), params, table, rows))

    def execute(self, conn: Connection) -> int:
        """Send the writes; returns the row count of the last one."""
        for stmt, params, expect in self.sent:
            result = conn.execute(stmt, params)
            if expect is not None and result.supports_sane_multi_rowcount():
                _expect(result.rowcount, expect)
        if not self.items:
            return 0
        if self.dialect == "postgresql":
            return int(conn.execute(*self._combined()).rowcount)
        rowcount = 0
        for build, p, table, rows in self.items:
            if table is not None:
                rowcount = int(conn.execute(_insert(table), list(rows)).rowcount)
            else:
                params = {f"w_{k}": v for k, v in p.items()}
                rowcount = int(conn.execute(alone(build), params).rowcount)
        return rowcount

    async def execute_plain(self, tx: PlainTransaction) -> int:
        """`execute` on a plain connection (PostgreSQL)."""
        for stmt, params, expect in self.sent:
            if isinstance(params, list):
                count = await tx.execute_many(stmt, params)
            else:
                count = await tx.execute(stmt, params)
            if expect is not None:
                _expect(count, expect)
        if not self.items:
            return 0
        return await tx.execute(*self._combined())

    def _combined(self) -> tuple[UpdateBase, Params]:
        stmt = _combined(tuple(item[0] for item in self.items))
        params = {
            f"w{i}_{k}": v for i, (_, p, _t, _r) in enumerate(self.items) for k, v in p.items()
        }
        return stmt, params


def _expect(count: int, expected: int) -> None:
    if count != expected:
        raise Conflict("a domain changed while its host was being written; retry")


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
