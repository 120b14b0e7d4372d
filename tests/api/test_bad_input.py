"""Hostile and invalid input: a 4xx problem with the location, never a 500, nothing stored."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from service.db.models import Event, Host, Pnode, Token
from tests.api.client import ApiClient
from tests.api.conftest import TWO_SOCKET


def mutate(fn: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    body = copy.deepcopy(TWO_SOCKET)
    fn(body)
    return body


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(body: dict[str, Any]) -> None:
        target: Any = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return apply


FOUR = [[10, 16, 16, 16], [16, 10, 16, 16], [16, 16, 10, 16], [16, 16, 16, 10]]

CASES: list[tuple[str, dict[str, Any], list[Any]]] = [
    ("slit-not-square", mutate(_set(["distances"], [[10, 21], [21]])), ["body", "distances", 1]),
    ("slit-wrong-size", mutate(_set(["distances"], FOUR)), ["body", "distances"]),
    ("slit-diagonal", mutate(_set(["distances", 1, 1], 11)), ["body", "distances", 1, 1]),
    ("slit-off-diagonal-10", mutate(_set(["distances", 0, 1], 10)), ["body", "distances", 0, 1]),
    ("slit-off-diagonal-255", mutate(_set(["distances", 1, 0], 255)), ["body", "distances", 1, 0]),
    ("slit-float", mutate(_set(["distances", 0, 1], 21.5)), ["body", "distances", 0, 1]),
    ("slit-bool", mutate(_set(["distances", 0, 1], True)), ["body", "distances", 0, 1]),
    ("slit-string", mutate(_set(["distances", 0, 1], "21")), ["body", "distances", 0, 1]),
    ("no-pnodes", mutate(_set(["pnodes"], [])), ["body", "pnodes"]),
    (
        "65-pnodes",
        mutate(_set(["pnodes"], [{"memory_mib": 1024, "reserved_mib": 0, "cpus": 1}] * 65)),
        ["body", "pnodes"],
    ),
    (
        "memory-zero",
        mutate(_set(["pnodes", 0, "memory_mib"], 0)),
        ["body", "pnodes", 0, "memory_mib"],
    ),
    (
        "reserved-not-below-memory",
        mutate(_set(["pnodes", 1, "reserved_mib"], 65536)),
        ["body", "pnodes", 1, "reserved_mib"],
    ),
    ("cpus-zero", mutate(_set(["pnodes", 0, "cpus"], 0)), ["body", "pnodes", 0, "cpus"]),
    (
        "huge-int",
        mutate(_set(["pnodes", 0, "memory_mib"], 10**30)),
        ["body", "pnodes", 0, "memory_mib"],
    ),
    (
        "negative",
        mutate(_set(["pnodes", 0, "reserved_mib"], -1)),
        ["body", "pnodes", 0, "reserved_mib"],
    ),
    ("pnodes-wrong-type", mutate(_set(["pnodes"], "two")), ["body", "pnodes"]),
    ("name-empty", mutate(_set(["name"], "")), ["body", "name"]),
    ("name-1mb", mutate(_set(["name"], "x" * 1_000_000)), ["body", "name"]),
    ("name-control-char", mutate(_set(["name"], "a\nb")), ["body", "name"]),
    ("name-wrong-type", mutate(_set(["name"], 7)), ["body", "name"]),
    ("unknown-field", mutate(_set(["colour"], "blue")), ["body", "colour"]),
    ("missing-field", mutate(lambda b: b.pop("distances")), ["body", "distances"]),
]


def stored(client: ApiClient) -> tuple[int, int, int, int]:
    with client.app.state.sessionmaker() as s:
        return tuple(  # type: ignore[return-value]
            int(s.scalar(select(func.count()).select_from(m)) or 0)
            for m in (Host, Pnode, Token, Event)
        )


def assert_problem(r: Any, status: int, loc: list[Any] | None = None) -> None:
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status and body["type"].startswith("/problems/") and body["detail"]
    if loc is not None:
        locs = [e["loc"] for e in body["errors"]]
        assert loc in locs, f"expected an error at {loc}, got {locs}"


@pytest.mark.parametrize(("case", "body", "loc"), CASES, ids=[c[0] for c in CASES])
def test_invalid_host_is_refused_with_location(
    client: ApiClient, case: str, body: dict[str, Any], loc: list[Any]
) -> None:
    r = client.post("/v1/hosts", json=body)
    assert_problem(r, 422, loc)
    assert r.json()["type"] == "/problems/validation-error"
    assert stored(client) == (0, 0, 0, 0)


RAW_CASES = [
    ("empty-body", b"", 422),
    ("not-json", b"{name: compute", 422),
    ("nan", b'{"name": "h", "pnodes": [{"memory_mib": NaN, "cpus": 1}], "distances": [[10]]}', 422),
    (
        "infinity",
        b'{"name": "h", "pnodes": [{"memory_mib": Infinity, "cpus": 1}], "distances": [[10]]}',
        422,
    ),
    ("deep-nesting", b"[" * 100_000 + b"]" * 100_000, 422),
    ("deep-object", b'{"a":' * 5000 + b"1" + b"}" * 5000, 422),
    ("json-array", b"[1, 2, 3]", 422),
    ("too-large", b'{"name": "' + b"x" * (2 << 20) + b'"}', 413),
    ("bad-utf8", b'{"name": "\xff\xfe"}', 422),
]


@pytest.mark.parametrize(("case", "raw", "status"), RAW_CASES, ids=[c[0] for c in RAW_CASES])
def test_garbage_bodies_get_a_4xx(client: ApiClient, case: str, raw: bytes, status: int) -> None:
    r = client.post("/v1/hosts", content=raw, headers={"Content-Type": "application/json"})
    assert_problem(r, status)
    assert stored(client) == (0, 0, 0, 0)


def test_wrong_content_type_is_refused(client: ApiClient) -> None:
    r = client.post(
        "/v1/hosts", content=json.dumps(TWO_SOCKET), headers={"Content-Type": "text/plain"}
    )
    assert 400 <= r.status_code < 500
    assert stored(client) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/nowhere", 404),
        ("GET", "/v1/hosts/not-a-uuid", 422),
        ("GET", "/v1/hosts/00000000-0000-0000-0000-000000000000", 404),
        ("DELETE", "/v1/cluster", 405),
        ("GET", "/v1/hosts?limit=0", 422),
        ("GET", "/v1/hosts?limit=99999999999999999999999", 422),
        ("GET", "/v1/events?since=-1", 422),
    ],
)
def test_unknown_routes_and_ids_are_problems(
    client: ApiClient, method: str, path: str, status: int
) -> None:
    assert_problem(client.request(method, path), status)


def test_validation_error_lists_every_bad_field(client: ApiClient) -> None:
    body = mutate(_set(["distances"], [[11, 300], [21, 10]]))
    body["pnodes"][0]["reserved_mib"] = 70000
    r = client.post("/v1/hosts", json=body)
    locs = [e["loc"] for e in r.json()["errors"]]
    assert ["body", "distances", 0, 0] in locs
    assert ["body", "distances", 0, 1] in locs
    assert ["body", "pnodes", 0, "reserved_mib"] in locs
