"""Shared fixtures: a migrated database per backend (SQLite and PostgreSQL) and an API client.

PostgreSQL: the first worker of a run migrates a template database, and every pytest process
(each xdist worker, or the one process of a serial run) gets a database of its own cloned from it
(`CREATE DATABASE ... TEMPLATE`), dropped at its end; the run's last process drops the template.
When the server is unreachable the tests skip locally and fail under CI=true, so CI can never go
green without them.

`make test` runs every test on PostgreSQL, the production database; the SQLite leg of the tests
that run on both backends (marker `sqlite`) and the long soak rounds (marker `soak`) run in
`make test-all`. The OpenAPI document is built once per process (see `_openapi_once`).
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine, text

from service.db import models  # noqa: F401  (every table on Base.metadata, for the resets)
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


#: One id per run, shared by the xdist workers (they inherit the controller's environment): it
#: names the run's template database and the lock file that guards it.
RUN_ID_VAR = "NB_TEST_RUN"
_OWN_RUN = RUN_ID_VAR not in os.environ
os.environ.setdefault(RUN_ID_VAR, uuid.uuid4().hex[:12])
RUN_ID = os.environ[RUN_ID_VAR]
TEMPLATE = f"nb_tpl_{RUN_ID}"
PG_BASE = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)


def _pg_admin() -> psycopg.Connection[Any]:
    return psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """This process's PostgreSQL database, cloned from the run's migrated template."""
    name = f"nb_test_{RUN_ID}_{os.getpid()}"
    lock_path = f"/tmp/numa-balloon-test-{RUN_ID}.lock"
    try:
        with open(lock_path, "w") as lock, _pg_admin() as conn:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one migrates, one clones at a time
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (TEMPLATE,)
            ).fetchone()
            if exists is None:
                conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
                try:
                    upgrade(f"{PG_BASE}/{TEMPLATE}")
                except BaseException:
                    conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
                    raise
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    except psycopg.Error as exc:
        _pg_unavailable(str(exc).strip())
    url = f"{PG_BASE}/{name}"
    yield url
    _dispose_engine(url)
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The process that started the run (the xdist controller, or the only process) drops the
    template once every worker is done."""
    if not _OWN_RUN or hasattr(session.config, "workerinput"):
        return
    try:
        with _pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
    except psycopg.Error:
        pass  # unreachable: no template was made
    if os.path.exists(lock := f"/tmp/numa-balloon-test-{RUN_ID}.lock"):
        os.unlink(lock)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'numa-balloon.db'}"
    upgrade(url)
    return url


_engines: dict[str, Engine] = {}


def engine_for(url: str) -> Engine:
    """One engine per database URL for the fixtures' own work (resets), kept for the session."""
    if url not in _engines:
        _engines[url] = make_engine(url)
    return _engines[url]


def _dispose_engine(url: str) -> None:
    engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()


def reset_database(url: str) -> None:
    """Empty every table but the Alembic version, and reset the cluster singleton."""
    engine = engine_for(url)
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


#: The backends of a test that runs on both: its SQLite leg runs in `make test-all`.
BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("pg_url" if request.param == "postgres" else "sqlite_url")
    reset_database(url)
    return url


@pytest.fixture
def postgres_db_url(pg_url: str) -> str:
    reset_database(pg_url)
    return pg_url


# The OpenAPI document of an app is built on its first request (the method rules read it), about
# 0.3-0.6 s for the same routes every time. Each pytest process builds it once per distinct app
# shape and gives every later app a fresh copy (JSON round trip: nothing is shared or mutated).
_raw_openapi: dict[str, str] = {}
_build_openapi = FastAPI.openapi


def _openapi_shape(app: FastAPI) -> str:
    routes = [
        (
            type(r).__name__,
            getattr(r, "path", ""),
            sorted(getattr(r, "methods", None) or ()),
            getattr(r, "name", ""),
            id(getattr(r, "endpoint", None)),
        )
        for r in app.routes
    ]
    head = (app.title, app.version, app.description, app.openapi_version, app.openapi_tags)
    return repr((head, app.servers, app.summary, app.root_path, routes))


def _openapi_once(self: FastAPI) -> dict[str, Any]:
    if self.openapi_schema is None:
        key = _openapi_shape(self)
        if key not in _raw_openapi:
            _raw_openapi[key] = json.dumps(_build_openapi(self))
        self.openapi_schema = json.loads(_raw_openapi[key])
    return self.openapi_schema


FastAPI.openapi = _openapi_once  # type: ignore[method-assign]


#: Modules bigger than this are split into groups of about this many consecutive tests.
GROUP_SIZE = 40
#: The modules whose tests take longest (`--durations`, 2026-12-06), collected first so the
#: workers start them first: last in line, one of them kept the others idle for a minute.
LONG_FIRST = (
    "tests/test_readme.py",
    "tests/test_bench.py",
    "tests/api/test_event_waiters.py",
    "tests/reliability/test_write_path.py",
    "tests/reliability/test_hostile_races.py",
    "tests/test_ui.py",
    "tests/test_ui_live.py",
    "tests/test_demo.py",
    "tests/reliability/test_hostile_recovery.py",
    "tests/reliability/test_load.py",
    "tests/client/test_client.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `--dist loadgroup`, keep the tests of a module that has a costly module-scoped
    fixture (a uvicorn, built wheels, a fuzzing world) on one worker, so each such fixture starts
    once; a big module is split into a few groups so one worker does not carry it alone. The
    longest modules go first, whole (a module's tests stay together for its fixtures)."""
    rank = {m: i for i, m in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
    by_module: dict[str, list[pytest.Item]] = {}
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        defs = info.name2fixturedefs.values() if info is not None else ()
        if any(d[-1].scope in ("module", "class", "package") for d in defs if d):
            by_module.setdefault(item.nodeid.split("::")[0], []).append(item)
    for module, members in by_module.items():
        groups = -(-len(members) // GROUP_SIZE)
        for i, item in enumerate(members):
            item.add_marker(pytest.mark.xdist_group(f"{module}#{i * groups // len(members)}"))
