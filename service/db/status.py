"""Status writes: what agents and guests report, kept apart from the toolstack's spec.

Hosts and domains carry a `version` (their ETag) that SQLAlchemy bumps on every ORM update of the
row. An orchestrator's `If-Match` must only fail when something it owns changed (target, policy,
placement, labels), so observed free memory, drift flags, balloon progress and the
uncooperative flag are written here with a plain UPDATE that leaves `version` alone, and set on
the loaded object as already-committed values so the unit of work does not write them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, update
from sqlalchemy.sql.dml import Update

from service.db.models import Domain, Host

_STATUS_COLUMNS = {
    Domain: frozenset({"uncooperative", "last_progress_at"}),
    Host: frozenset({"drift_flagged", "observed_at"}),
}


def status_update(rows: Sequence[Domain | Host], values: dict[str, Any]) -> Update:
    """The UPDATE of the same status values on hosts or domains (all of one model); refuses
    any other column."""
    model = type(rows[0])
    unknown = set(values) - _STATUS_COLUMNS[model]
    if unknown:
        raise ValueError(f"not status columns of {model.__name__}: {sorted(unknown)}")
    table = cast(Table, model.__table__)
    ids = [row.id for row in rows]
    where = table.c.id == ids[0] if len(ids) == 1 else table.c.id.in_(ids)
    return update(table).where(where).values(**values)
