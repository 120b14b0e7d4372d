"""Shared fixtures: a migrated database per backend (SQLite and PostgreSQL) and an API client.

PostgreSQL tests use a database of their own (created and dropped by this run). When the server is
unreachable they skip locally and fail under CI=true, so CI can never go green without them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import text

from service.db.alembic import upgrade
from service.db.base import Base
from service.db.session import make_engine

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
PG_ADMIN_DSN = os.environ.get("NUMA_BALLOON_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _pg_unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"PostgreSQL is required in CI and is unreachable: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL unreachable: {reason}")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    name = f"nb_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        _pg_unavailable(str(exc).strip())
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{name}"
    upgrade(url)
    yield url
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'numa-balloon.db'}"
    upgrade(url)
    return url


def reset_database(url: str) -> None:
    """Empty every table but the Alembic version, and reset the cluster singleton."""
    engine = make_engine(url)
    tables = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name != "cluster_settings"]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))
        conn.execute(
            text(
                "UPDATE cluster_settings SET block_mib = 128, worst_case_template = NULL, "
                "ha = NULL, version = 1"
            )
        )
    engine.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def db_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("pg_url" if request.param == "postgres" else "sqlite_url")
    reset_database(url)
    return url


@pytest.fixture
def postgres_db_url(pg_url: str) -> str:
    reset_database(pg_url)
    return pg_url
