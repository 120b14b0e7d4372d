"""failed pool steps retried, the domain's last step failure, the guest's view of a vnode

Issue 27: a failed pool step is issued again as a new step with `attempt` + 1, shown to agents
from `not_before` (bounded, backed-off retries); the domain keeps the last failed attempt as
status (`step_failure`); a vnode keeps what the guest kernel shows of it (`guest_visible_mib`,
the node's MemTotal as the guest agent reports it) next to what the hypervisor holds
(`actual_mib`).

Revision ID: realguest_step_retries
Revises: i25_leases
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import service.db.base

revision: str = "realguest_step_retries"
down_revision: str | None = "i25_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempt", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(
            sa.Column("not_before", service.db.base.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.add_column(sa.Column("step_failure", sa.JSON(), nullable=True))
    with op.batch_alter_table("vnodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("guest_visible_mib", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vnodes", schema=None) as batch_op:
        batch_op.drop_column("guest_visible_mib")
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.drop_column("step_failure")
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.drop_column("not_before")
        batch_op.drop_column("attempt")
