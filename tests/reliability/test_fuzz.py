"""Schemathesis against the app in-process (ASGI): every route, with tokens that are valid for it.

Each operation gets generated valid and invalid requests; path ids are real ids of a small world
(two hosts, domains, a migration in flight) half the time, so the fuzzer reaches the code behind
the 404s. Checks: never a 5xx, and every response (status, content type, headers, body) valid
against the OpenAPI schema. `make fuzz` runs many more cases (NUMA_BALLOON_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.specs.openapi import checks as openapi_checks

from service.app import create_app
from service.db.alembic import upgrade
from service.settings import Settings
from tests.api.client import api_client
from tests.api.world import World, build_world
from tests.conftest import ADMIN_TOKEN, reset_database

pytestmark = pytest.mark.reliability

EXAMPLES = int(os.environ.get("NUMA_BALLOON_FUZZ_EXAMPLES", "12"))

CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
]


# The app is built at import (no database access until a request), so schemathesis can read its
# schema and parametrize one test per operation; the fixture migrates the database and fills it.
_DB_DIR = tempfile.mkdtemp(prefix="nb-fuzz-")
_DB_URL = f"sqlite:///{_DB_DIR}/fuzz.db"
# No failed-authentication limit: the fuzzer sends made-up tokens, and 429s would hide handlers.
APP: FastAPI = create_app(
    Settings(database_url=_DB_URL, admin_token=ADMIN_TOKEN, failed_auth_per_min=0)
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    upgrade(_DB_URL)
    reset_database(_DB_URL)
    with api_client(APP, ADMIN_TOKEN) as c:
        built = build_world(c)
    yield built
    APP.state.engine.dispose()
    shutil.rmtree(_DB_DIR, ignore_errors=True)


def _token(path: str, world: World) -> str | None:
    if path.startswith("/v1/agent/"):
        return world.tokens["agent_this"]
    if path.startswith("/v1/guest/"):
        return world.tokens["guest_this"]
    return ADMIN_TOKEN


def _real_ids(case: Any, world: World, rng: random.Random) -> None:
    """Half the time, point path ids at real objects so the handlers past the lookup run."""
    if not case.path_parameters or rng.random() < 0.5:
        return
    real = {
        "host_id": world.host_a,
        "domain_id": world.domain_x,
        "migration_id": world.migration,
        "step_id": world.step_a,
    }
    for name in case.path_parameters:
        if name in real:
            case.path_parameters[name] = real[name]


def _bounded_waits(case: Any) -> None:
    """Waiting routes answer when an event comes or the wait ends: keep the fuzzer's requests
    short (a long-poll of at most 0.2 s; a stream of one event from the start of the log)."""
    query = case.query if isinstance(case.query, dict) else None
    if query is None:
        return
    if case.path == "/v1/events" and "wait" in query:
        query["wait"] = 0.2
    if case.path == "/v1/events/stream":
        query.update(since=0, limit=1)
        query.pop("subject_id", None)
        query.pop("kind", None)
        query.pop("actor", None)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_route_never_fails_and_matches_the_schema(case: Any, world: World) -> None:
    rng = random.Random(hash((case.method, case.path, str(case.body)[:64])))
    _real_ids(case, world, rng)
    _bounded_waits(case)
    token = _token(case.path, world)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    case.call_and_validate(headers=headers, checks=CHECKS)
