"""List filters shared by hosts and domains: name, external id, labels (all must match)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select

from service.db.models import Domain, Host

T = TypeVar("T", bound=Any)


def filtered(
    stmt: Select[T],
    model: type[Host] | type[Domain],
    *,
    name: str | None = None,
    external_id: str | None = None,
    labels: Sequence[tuple[str, str]] = (),
) -> Select[T]:
    if name is not None:
        stmt = stmt.where(model.name == name)
    if external_id is not None:
        stmt = stmt.where(model.external_id == external_id)
    for key, value in labels:
        # JSON_EXTRACT on SQLite, ->> on PostgreSQL: the label's value as text.
        stmt = stmt.where(model.labels[key].as_string() == value)
    return stmt
