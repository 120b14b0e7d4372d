"""steps: a partial index of the pending steps per domain; one stamp of a host per transaction

A new target cancels the domain's pending pool steps (`UPDATE steps ... WHERE domain_id = :d
AND state = 'pending'`). Through `ix_steps_domain_id` that statement visited every step the
domain ever had: a domain retargeted a few hundred times had a few hundred, and each write cost
more than the last.

A target write moves a host's pnode counters and its domain's backing in one statement; the
backing's trigger stamped the host (`failover_stamps`, skipped when the transaction had already
stamped it) and then the pnodes' trigger stamped it again (`i18_cluster_feed`, not skipped): two
new versions of the host's row per write. The pnodes' trigger now skips a host its transaction
stamped already, as the others do.

Revision ID: i25_pending_steps
Revises: failover_stamps
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i25_pending_steps"
down_revision: str | None = "failover_stamps"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PENDING = sa.text("state = 'pending'")
_XID = "pg_current_xact_id()::text::bigint"


def _pnodes_fn(once: bool) -> str:
    skip = f"AND changed_xid IS DISTINCT FROM {_XID}" if once else ""
    return f"""
CREATE OR REPLACE FUNCTION pnodes_stamp_host_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE hosts SET changed_xid = {_XID}
    WHERE id IN (
        SELECT n.host_id FROM pnodes_new n
        JOIN pnodes_old o ON o.host_id = n.host_id AND o."index" = n."index"
        WHERE (n.memory_mib, n.reserved_mib, n.cpus, n.allocated_mib, n.claimed_mib, n.load_vcpus)
            IS DISTINCT FROM
            (o.memory_mib, o.reserved_mib, o.cpus, o.allocated_mib, o.claimed_mib, o.load_vcpus)
    ) {skip};
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.create_index(
            "ix_steps_domain_id_pending",
            ["domain_id"],
            unique=False,
            postgresql_where=_PENDING,
            sqlite_where=_PENDING,
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_pnodes_fn(once=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_pnodes_fn(once=False))
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.drop_index("ix_steps_domain_id_pending")
