"""Labels and external ids: the orchestrator's own bookkeeping on hosts and domains."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from service.db.audit import record_event
from service.errors import Conflict


class Labelled(Protocol):
    id: str
    labels: dict[str, str]
    external_id: str | None
    updated_at: datetime


class BookkeepingPatch(Protocol):
    labels: dict[str, str] | None
    external_id: str | None

    @property
    def model_fields_set(self) -> set[str]: ...


def set_bookkeeping(
    session: Session,
    row: Labelled,
    body: BookkeepingPatch,
    *,
    kind: str,
    actor: str,
    now: datetime,
    external_id_taken: Callable[[str], bool],
) -> bool:
    """Apply the fields the body sets; one `<kind>.updated` event for whatever changed.
    Returns whether anything did (the row's version then moves: it is spec)."""
    fields = body.model_fields_set
    changes: dict[str, tuple[Any, Any]] = {}
    if "labels" in fields and body.labels != row.labels:
        changes["labels"] = (row.labels, body.labels)
        row.labels = dict(body.labels or {})
    if "external_id" in fields and body.external_id != row.external_id:
        if body.external_id is not None and external_id_taken(body.external_id):
            raise Conflict(f"a {kind} with external_id {body.external_id!r} already exists")
        changes["external_id"] = (row.external_id, body.external_id)
        row.external_id = body.external_id
    if changes:
        row.updated_at = now
        record_event(
            session,
            actor,
            f"{kind}.updated",
            kind,
            row.id,
            before={k: b for k, (b, _) in changes.items()},
            after={k: a for k, (_, a) in changes.items()},
            at=now,
        )
    return bool(changes)
