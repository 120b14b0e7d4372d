"""hosts.changed_xid: the transaction that last changed what placement reads of a host

Each worker keeps the cluster's placement matrices in memory and, per request, reads only the
hosts whose `changed_xid` is not visible in the snapshot it last read (one indexed statement),
instead of aggregating every pnode of every host. The database keeps the column itself: a
trigger on hosts stamps it when a host is registered or its state, name or SLIT changes, and a
statement trigger on pnodes stamps the hosts whose counters an UPDATE changed, so no writer can
forget it. SQLite has no snapshots: there the column stays 0 and every request reads the
cluster whole.

Revision ID: i18_cluster_feed
Revises: i18_pnode_load
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i18_cluster_feed"
down_revision: str | None = "i18_pnode_load"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_XID = "pg_current_xact_id()::text::bigint"

_HOSTS_FN = f"""
CREATE FUNCTION hosts_stamp_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
        OR NEW.state IS DISTINCT FROM OLD.state
        OR NEW.name IS DISTINCT FROM OLD.name
        OR NEW.distances::text IS DISTINCT FROM OLD.distances::text
    THEN
        NEW.changed_xid := {_XID};
    END IF;
    RETURN NEW;
END
$$
"""

_PNODES_FN = f"""
CREATE FUNCTION pnodes_stamp_host_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE hosts SET changed_xid = {_XID}
    WHERE id IN (
        SELECT n.host_id FROM pnodes_new n
        JOIN pnodes_old o ON o.host_id = n.host_id AND o."index" = n."index"
        WHERE (n.memory_mib, n.reserved_mib, n.cpus, n.allocated_mib, n.claimed_mib, n.load_vcpus)
            IS DISTINCT FROM
            (o.memory_mib, o.reserved_mib, o.cpus, o.allocated_mib, o.claimed_mib, o.load_vcpus)
    );
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.add_column(
        "hosts", sa.Column("changed_xid", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.create_index("ix_hosts_changed_xid", "hosts", ["changed_xid"])
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_HOSTS_FN)
    op.execute(
        "CREATE TRIGGER hosts_stamp_change BEFORE INSERT OR UPDATE ON hosts "
        "FOR EACH ROW EXECUTE FUNCTION hosts_stamp_change()"
    )
    op.execute(_PNODES_FN)
    op.execute(
        "CREATE TRIGGER pnodes_stamp_host_change AFTER UPDATE ON pnodes "
        "REFERENCING NEW TABLE AS pnodes_new OLD TABLE AS pnodes_old "
        "FOR EACH STATEMENT EXECUTE FUNCTION pnodes_stamp_host_change()"
    )
    op.execute(f"UPDATE hosts SET changed_xid = {_XID}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER pnodes_stamp_host_change ON pnodes")
        op.execute("DROP FUNCTION pnodes_stamp_host_change()")
        op.execute("DROP TRIGGER hosts_stamp_change ON hosts")
        op.execute("DROP FUNCTION hosts_stamp_change()")
    op.drop_index("ix_hosts_changed_xid", table_name="hosts")
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("changed_xid")
