"""migration liveness: claims held past `planned`, progress and stuck markers

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import service.db.base

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("claims") as batch:
        batch.alter_column(
            "expires_at", existing_type=service.db.base.UTCDateTime(timezone=True), nullable=True
        )
    with op.batch_alter_table("migrations") as batch:
        batch.alter_column(
            "expires_at", existing_type=service.db.base.UTCDateTime(timezone=True), nullable=True
        )
        batch.add_column(
            sa.Column("progress_at", service.db.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(
            sa.Column("stuck_at", service.db.base.UTCDateTime(timezone=True), nullable=True)
        )
    op.execute("UPDATE migrations SET progress_at = updated_at")
    # A migration already past `planned` holds its claims from now on.
    op.execute(
        "UPDATE claims SET expires_at = NULL WHERE migration_id IN (SELECT id FROM migrations "
        "WHERE state IN ('preparing', 'migrating', 'settling'))"
    )
    op.execute(
        "UPDATE migrations SET expires_at = NULL "
        "WHERE state IN ('preparing', 'migrating', 'settling')"
    )
    with op.batch_alter_table("migrations") as batch:
        batch.alter_column(
            "progress_at",
            existing_type=service.db.base.UTCDateTime(timezone=True),
            nullable=False,
        )


def downgrade() -> None:
    op.execute(
        "UPDATE claims SET expires_at = (SELECT updated_at FROM migrations "
        "WHERE migrations.id = claims.migration_id) WHERE expires_at IS NULL"
    )
    op.execute("UPDATE migrations SET expires_at = updated_at WHERE expires_at IS NULL")
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("stuck_at")
        batch.drop_column("progress_at")
        batch.alter_column(
            "expires_at", existing_type=service.db.base.UTCDateTime(timezone=True), nullable=False
        )
    with op.batch_alter_table("claims") as batch:
        batch.alter_column(
            "expires_at", existing_type=service.db.base.UTCDateTime(timezone=True), nullable=False
        )
