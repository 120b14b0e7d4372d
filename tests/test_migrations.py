"""The Alembic history must produce exactly the schema the models describe, on both backends."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from service.db.alembic import head_revision
from service.db.base import Base
from service.db.session import make_engine


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_models_and_migrations_agree(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("pg_url" if backend == "postgres" else "sqlite_url")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, Base.metadata)
            assert diff == [], f"models differ from the migrations: {diff}"
            assert ctx.get_current_revision() == head_revision()
            assert set(inspect(conn).get_table_names()) >= set(Base.metadata.tables)
            block = conn.execute(text("SELECT block_mib FROM cluster_settings WHERE id = 1"))
            assert block.scalar() == 128
    finally:
        engine.dispose()


def test_a_model_change_without_a_migration_is_detected(sqlite_url: str) -> None:
    """The check above can fail: a column the migrations lack shows up in the diff."""
    from sqlalchemy import Column, Integer, MetaData, Table

    meta = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(meta)
    Table("hosts", meta, Column("rack", Integer), extend_existing=True)
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), meta)
    finally:
        engine.dispose()
    assert any(d[0] == "add_column" and d[3].name == "rack" for d in diff)
