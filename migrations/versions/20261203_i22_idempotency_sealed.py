"""idempotency records: the key's digest instead of the key, sealed secrets, response headers

A replayed create now returns the secret its first response showed (an agent or guest token, an
API key's secret). The secret is sealed (AES-GCM) under a key derived from the Idempotency-Key,
which is therefore no longer stored, only its SHA-256 digest; the response headers (Location,
ETag, Cache-Control) are kept so that a replay is the same response. Existing records keep
replaying (their keys become digests; they never held a secret).

Revision ID: i22_idempotency_sealed
Revises: i18_cluster_feed
Create Date: 2026-12-03
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i22_idempotency_sealed"
down_revision: str | None = "i18_cluster_feed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RECORDS = sa.table("idempotency_records", sa.column("id", sa.Integer), sa.column("key", sa.String))


def upgrade() -> None:
    conn = op.get_bind()
    for row_id, key in conn.execute(sa.select(_RECORDS.c.id, _RECORDS.c.key)).all():
        digest = hashlib.sha256(key.encode()).hexdigest()
        conn.execute(_RECORDS.update().where(_RECORDS.c.id == row_id).values(key=digest))
    with op.batch_alter_table("idempotency_records", schema=None) as batch_op:
        batch_op.alter_column(
            "key",
            new_column_name="key_digest",
            existing_type=sa.String(length=255),
            type_=sa.String(length=64),
            existing_nullable=False,
        )
        batch_op.add_column(sa.Column("response_headers", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("sealed_secrets", sa.Text(), nullable=True))


def downgrade() -> None:
    # A digest cannot name its key again: the records go (a retry then creates anew).
    op.execute("DELETE FROM idempotency_records")
    with op.batch_alter_table("idempotency_records", schema=None) as batch_op:
        batch_op.drop_column("sealed_secrets")
        batch_op.drop_column("response_headers")
        batch_op.alter_column(
            "key_digest",
            new_column_name="key",
            existing_type=sa.String(length=64),
            type_=sa.String(length=255),
            existing_nullable=False,
        )
