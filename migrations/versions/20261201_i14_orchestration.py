"""orchestration: labels and external ids on hosts and domains, evacuation, auto-advance

Revision ID: i14_orchestration
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import service.db.base

revision: str = "i14_orchestration"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("external_id", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("labels", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(
            sa.Column(
                "evacuation_requested_at",
                service.db.base.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
        batch.create_unique_constraint(batch.f("uq_hosts_external_id"), ["external_id"])
    with op.batch_alter_table("domains") as batch:
        batch.add_column(sa.Column("external_id", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("labels", sa.JSON(), nullable=False, server_default="{}"))
        batch.create_unique_constraint(batch.f("uq_domains_external_id"), ["external_id"])
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(
            sa.Column("auto_advance", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("auto_advance")
    with op.batch_alter_table("domains") as batch:
        batch.drop_constraint(batch.f("uq_domains_external_id"), type_="unique")
        batch.drop_column("labels")
        batch.drop_column("external_id")
    with op.batch_alter_table("hosts") as batch:
        batch.drop_constraint(batch.f("uq_hosts_external_id"), type_="unique")
        batch.drop_column("evacuation_requested_at")
        batch.drop_column("labels")
        batch.drop_column("external_id")
