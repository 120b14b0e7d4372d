"""agent leases: a host agent's liveness apart from its reports, and the host's agent judgement

`agent_leases` holds one row per host whose agent took a lease (`PUT
/v1/agent/hosts/{id}/lease`), renewed by one statement; `hosts.agent` is the service's judgement
(NULL: never leased, not judged; connected; lost). Placement reads lost hosts as unavailable, so
the hosts trigger now stamps `changed_xid` when the judgement moves, like a state change.

Revision ID: i25_leases
Revises: failover_ha
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from service.db.base import UTCDateTime

revision: str = "i25_leases"
down_revision: str | None = "failover_ha"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_XID = "pg_current_xact_id()::text::bigint"


def _hosts_fn(agent: bool) -> str:
    also = "OR NEW.agent IS DISTINCT FROM OLD.agent" if agent else ""
    return f"""
CREATE OR REPLACE FUNCTION hosts_stamp_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
        OR NEW.state IS DISTINCT FROM OLD.state
        OR NEW.name IS DISTINCT FROM OLD.name
        OR NEW.distances::text IS DISTINCT FROM OLD.distances::text
        {also}
    THEN
        NEW.changed_xid := {_XID};
    END IF;
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("agent", sa.String(length=16), nullable=True))
        batch.create_check_constraint(
            op.f("ck_hosts_agent_valid"), "agent IN ('connected', 'lost')"
        )
    op.create_table(
        "agent_leases",
        sa.Column("host_id", sa.String(length=36), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("renewed_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("lost", sa.Boolean(), nullable=False),
        sa.Column("prior", sa.String(length=16), nullable=True),
        sa.Column("report_due", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["hosts.id"],
            name=op.f("fk_agent_leases_host_id_hosts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("host_id", name=op.f("pk_agent_leases")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_hosts_fn(agent=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_hosts_fn(agent=False))
    op.drop_table("agent_leases")
    with op.batch_alter_table("hosts") as batch:
        batch.drop_constraint(op.f("ck_hosts_agent_valid"), type_="check")
        batch.drop_column("agent")
