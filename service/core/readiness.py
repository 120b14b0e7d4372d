"""Readiness: does the database answer, and is it migrated to the revision this code expects?"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text

from service.core.unit import Database
from service.db.alembic import current_revision, head_revision


@dataclass(frozen=True)
class Revisions:
    current: str | None  # the database's
    head: str | None  # the code's

    @property
    def migrated(self) -> bool:
        return self.current == self.head


def revisions(db: Database) -> Revisions:
    """One connection: a round trip, then the database's Alembic revision. Raises the driver's
    error (SQLAlchemyError) when the database does not answer."""
    head = head_revision()
    with db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        current = current_revision(conn)
    return Revisions(current=current, head=head)
