from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI

from service.app import create_app
from service.settings import Settings
from tests.api.client import ApiClient, api_client
from tests.conftest import ADMIN_TOKEN


@pytest.fixture
def app(db_url: str) -> Iterator[FastAPI]:
    application = create_app(Settings(database_url=db_url, admin_token=ADMIN_TOKEN))
    yield application
    application.state.engine.dispose()


@pytest.fixture
def client(app: FastAPI) -> Iterator[ApiClient]:
    with api_client(app, ADMIN_TOKEN) as c:
        yield c


@pytest.fixture
def pg_client(postgres_db_url: str) -> Iterator[ApiClient]:
    """A client of an app on PostgreSQL only (tests of row locks and of the psycopg driver)."""
    app: FastAPI = create_app(Settings(database_url=postgres_db_url, admin_token=ADMIN_TOKEN))
    with api_client(app, ADMIN_TOKEN) as c:
        yield c
    app.state.engine.dispose()


TWO_SOCKET = {
    "name": "compute-01",
    "pnodes": [
        {"memory_mib": 65536, "reserved_mib": 2048, "cpus": 16},
        {"memory_mib": 65536, "reserved_mib": 1024, "cpus": 16},
    ],
    "distances": [[10, 21], [21, 10]],
}
