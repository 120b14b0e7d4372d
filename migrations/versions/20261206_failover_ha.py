"""failover protection: cluster_settings.ha and hosts.recovery (issue 26)

`cluster_settings.ha` holds the protection asked for with `PATCH /v1/cluster` ({host_failures,
label_selector, allow_spread, overcommitted}; NULL: off). `hosts.recovery` records a host's
declared failure and where its protected domains were restarted.

Revision ID: failover_ha
Revises: i22_idempotency_sealed
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "failover_ha"
down_revision: str | None = "i22_idempotency_sealed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cluster_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ha", sa.JSON(), nullable=True))
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recovery", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("recovery")
    with op.batch_alter_table("cluster_settings", schema=None) as batch_op:
        batch_op.drop_column("ha")
