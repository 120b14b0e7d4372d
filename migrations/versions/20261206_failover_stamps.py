"""hosts.changed_xid also stamped when what the failover planner reads of a host's domains moves

The failover protection keeps a plan per worker and re-checks only the hosts whose
`changed_xid` is not visible in the snapshot it was built in (service/core/failover_kept.py).
The hosts and pnodes triggers (i18_cluster_feed, i25_leases) stamp a host when its state, agent,
SLIT or pnode counters change; the planner also reads, per host, the protected domains on it
(state, host, labels, distances), their vnodes' targets and vCPUs, and the squeezable MiB of the
running domains' backing (targets, dynamic_min, cooperation, backing cells). A label patch or a
rebalance between vnodes of one pnode changes none of the counters, so these triggers stamp the
host too (statement triggers with transition tables: one UPDATE of the hosts a statement touched,
skipped for hosts the transaction stamped already).

Revision ID: failover_stamps
Revises: realguest_step_retries
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "failover_stamps"
down_revision: str | None = "realguest_step_retries"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_XID = "pg_current_xact_id()::text::bigint"


def _stamp(select_hosts: str) -> str:
    return f"""
    UPDATE hosts SET changed_xid = {_XID}
    WHERE id IN ({select_hosts}) AND changed_xid IS DISTINCT FROM {_XID};
"""


_DOMAIN_COLS = (
    "state, host_id, labels::text, distances::text, target_mib, dynamic_min_mib, uncooperative"
)

_FUNCTIONS = {
    "domains_stamp_host_update": _stamp(
        f"""SELECT n.host_id FROM d_new n JOIN d_old o ON o.id = n.id
        WHERE ({", ".join("n." + c for c in _DOMAIN_COLS.split(", "))})
            IS DISTINCT FROM ({", ".join("o." + c for c in _DOMAIN_COLS.split(", "))})
        UNION SELECT o.host_id FROM d_new n JOIN d_old o ON o.id = n.id
        WHERE n.host_id IS DISTINCT FROM o.host_id"""
    ),
    "domains_stamp_host_insert": _stamp("SELECT host_id FROM d_new"),
    "domains_stamp_host_delete": _stamp("SELECT host_id FROM d_old"),
    "vnodes_stamp_host_update": _stamp(
        """SELECT d.host_id FROM v_new n JOIN v_old o
            ON o.domain_id = n.domain_id AND o."index" = n."index"
        JOIN domains d ON d.id = n.domain_id
        WHERE (n.target_mib, n.vcpu_count) IS DISTINCT FROM (o.target_mib, o.vcpu_count)"""
    ),
    "backing_stamp_host_insert": _stamp("SELECT host_id FROM b_new"),
    "backing_stamp_host_delete": _stamp("SELECT host_id FROM b_old"),
    "backing_stamp_host_update": _stamp(
        """SELECT n.host_id FROM b_new n JOIN b_old o
            ON (o.domain_id, o.vnode, o.host_id, o.pnode) = (n.domain_id, n.vnode, n.host_id, n.pnode)
        WHERE n.mib IS DISTINCT FROM o.mib"""
    ),
}

# (trigger/function name, table, event, transition tables)
_TRIGGERS = (
    ("domains_stamp_host_update", "domains", "UPDATE", "OLD TABLE AS d_old NEW TABLE AS d_new"),
    ("domains_stamp_host_insert", "domains", "INSERT", "NEW TABLE AS d_new"),
    ("domains_stamp_host_delete", "domains", "DELETE", "OLD TABLE AS d_old"),
    ("vnodes_stamp_host_update", "vnodes", "UPDATE", "OLD TABLE AS v_old NEW TABLE AS v_new"),
    ("backing_stamp_host_insert", "backing", "INSERT", "NEW TABLE AS b_new"),
    ("backing_stamp_host_delete", "backing", "DELETE", "OLD TABLE AS b_old"),
    ("backing_stamp_host_update", "backing", "UPDATE", "OLD TABLE AS b_old NEW TABLE AS b_new"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, event, tables in _TRIGGERS:
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN"
            f"{_FUNCTIONS[name]}    RETURN NULL;\nEND\n$$"
        )
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {tables} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, _, _ in _TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON {table}")
        op.execute(f"DROP FUNCTION {name}()")
