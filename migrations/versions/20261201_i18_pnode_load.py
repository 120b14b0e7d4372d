"""pnodes.load_vcpus: the vCPU load by home pnode, materialized like allocated_mib

Ranking 10,000 hosts read it by aggregating every vnode of every domain (200,000 domains:
about two million rows per request); now it is one column of the pnode rows.

Revision ID: i18_pnode_load
Revises: i15_api_keys
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i18_pnode_load"
down_revision: str | None = "i15_api_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "pnodes", sa.Column("load_vcpus", sa.Integer(), server_default="0", nullable=False)
    )
    op.execute(
        """
        UPDATE pnodes SET load_vcpus = COALESCE((
            SELECT SUM(vnodes.vcpu_count) FROM vnodes
            JOIN domains ON domains.id = vnodes.domain_id
            WHERE domains.host_id = pnodes.host_id AND vnodes.home_pnode = pnodes."index"
        ), 0)
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("pnodes") as batch:
        batch.drop_column("load_vcpus")
