"""A real uvicorn per backend (SQLite, PostgreSQL) for the client and CLI tests of a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from numa_balloon_client import Client
from numa_balloon_testing.server import Server
from tests.conftest import ADMIN_TOKEN, BACKENDS, reset_database

FAST = {"NUMA_BALLOON_INACTIVE_AFTER_S": "1", "NUMA_BALLOON_UNCOOPERATIVE_AFTER_S": "2"}


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    url: str = request.getfixturevalue("pg_url" if request.param == "postgres" else "sqlite_url")
    reset_database(url)
    with Server(url, admin_token=ADMIN_TOKEN, env=FAST) as srv:
        yield srv


@pytest.fixture
def nb(server: Server) -> Iterator[Client]:
    with Client(server.url, ADMIN_TOKEN) as client:
        yield client


def two_socket(name: str) -> dict[str, object]:
    return {
        "name": name,
        "pnodes": [{"memory_mib": 16384, "reserved_mib": 1024, "cpus": 8}] * 2,
        "distances": [[10, 21], [21, 10]],
    }


def small_domain(name: str, host_id: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {
        "name": name,
        "memory": {"dynamic_min_mib": 1024, "dynamic_max_mib": 4096, "target_mib": 2048},
        "vnodes": [
            {"size_mib": 2048, "vcpus": [0, 1], "distances": [10, 20]},
            {"size_mib": 2048, "vcpus": [2, 3], "distances": [20, 10]},
        ],
    }
    if host_id is not None:
        body["host_id"] = host_id
    return body
