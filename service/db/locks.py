"""Row locks that serialize writers per host."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import Host


def lock_hosts(session: Session, host_ids: Sequence[str]) -> dict[str, Host]:
    """Lock host rows in id order (a global order, so two writers never deadlock).

    On SQLite the transaction already holds the write lock (BEGIN IMMEDIATE) and FOR UPDATE is a
    no-op; on PostgreSQL this is what makes check-then-write safe.
    """
    ids = sorted(set(host_ids))
    rows = session.scalars(
        select(Host).where(Host.id.in_(ids)).order_by(Host.id).with_for_update()
    ).all()
    return {h.id: h for h in rows}
