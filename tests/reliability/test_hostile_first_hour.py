"""The hostile client's first hour (issue 22): lone surrogates in any body and unbounded error
lists."""

from __future__ import annotations

import http.client
import json
import math
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.server import Server
from service.api.problems import MAX_ERRORS, ProblemResponse, render
from service.errors import InvalidInput
from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body
from tests.conftest import ADMIN_TOKEN
from tests.reliability.hostile import live_server

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
MARK = "@LONE@"
# Both halves, escaped and raw (CESU-8: what json.loads(bytes) turns back into a surrogate).
SURROGATES = {
    "escaped high": b"\\ud800",
    "escaped low": b"\\udc00",
    "raw high": b"\xed\xa0\x80",
    "raw low": b"\xed\xb0\x80",
}


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


# --- 1. lone surrogates, in any string of any body ----------------------------------------------


def _world(client: ApiClient) -> dict[str, Any]:
    host = client.post("/v1/hosts", json=host_body("sur-host")).json()
    dom = client.post("/v1/domains", json=domain_body("sur-dom", [1024], host_id=host["id"]))
    return {"host": host, "domain": dom.json()}


# (method, path, token kind, body with MARK where the surrogate goes, where the 422 points)
CASES: dict[str, tuple[str, str, str, Any, list[Any]]] = {
    "host name": ("POST", "/v1/hosts", "admin", host_body(f"h-{MARK}"), ["body", "name"]),
    "domain name": (
        "POST",
        "/v1/domains",
        "admin",
        domain_body(f"d-{MARK}", [1024]),
        ["body", "name"],
    ),
    "label value": (
        "PATCH",
        "/v1/domains/{domain}",
        "admin",
        {"labels": {"team": f"t-{MARK}"}},
        ["body", "labels", "team"],
    ),
    "api key name": (
        "POST",
        "/v1/api-keys",
        "admin",
        {"name": f"k-{MARK}", "role": "viewer"},
        ["body", "name"],
    ),
    "guest balloon report key": (
        "PUT",
        "/v1/guest/balloon",
        "guest",
        {"vnodes": [{"index": 0, "actual_mib": 512, f"x-{MARK}": 1}]},
        ["body", "vnodes", 0],
    ),
    "agent report domain id": (
        "POST",
        "/v1/agent/hosts/{host}/report",
        "agent",
        {"domains": [{"domain_id": f"{MARK}", "vnodes": []}]},
        ["body", "domains", 0, "domain_id"],
    ),
    "agent ack detail": (
        "POST",
        "/v1/agent/hosts/{host}/steps/6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70/ack",
        "agent",
        {"ok": False, "detail": f"failed: {MARK}"},
        ["body", "detail"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_lone_surrogate_in_any_string_of_any_body_is_a_located_422(
    client: ApiClient, case: str
) -> None:
    world = _world(client)
    method, path, who, body, loc = CASES[case]
    path = path.format(host=world["host"]["id"], domain=world["domain"]["id"])
    token = {
        "admin": ADMIN_TOKEN,
        "agent": world["host"]["agent_token"],
        "guest": world["domain"]["guest_token"],
    }[who]
    for name, surrogate in SURROGATES.items():
        raw = json.dumps(body).encode().replace(MARK.encode(), surrogate)
        r = client.request(method, path, content=raw, headers=JSON, token=token)
        problem = _problem(r, 422)
        assert problem["errors"][0]["loc"] == loc, (name, problem)
        assert "surrogate" in problem["detail"], (name, problem)


def test_a_surrogate_pair_is_text_and_utf16_bodies_are_refused(client: ApiClient) -> None:
    raw = json.dumps(host_body(f"pair-{MARK}")).encode().replace(MARK.encode(), b"\\ud83d\\ude00")
    r = client.post("/v1/hosts", content=raw, headers=JSON)
    assert r.status_code == 201 and r.json()["name"] == "pair-\U0001f600", r.text
    # UTF-16 would otherwise reach the parser as text the checks never saw.
    utf16 = json.dumps(host_body(f"h-{MARK}")).replace(MARK, "\\udc00").encode("utf-16-le")
    assert _problem(client.post("/v1/hosts", content=utf16, headers=JSON), 422)["errors"]


def test_the_problem_renderer_cannot_fail_on_what_it_echoes() -> None:
    error = InvalidInput(
        "bad \udc00 input",
        errors=[{"loc": ["body", "k\ud800"], "msg": "m", "input": [math.nan, b"\xff", object()]}],
        weird={"\udfff": math.inf},
    )
    response = render(error, "/v1/x\udc00")
    body = json.loads(bytes(response.body).decode("utf-8"))  # strict UTF-8: no lone surrogate left
    assert body["detail"] == "bad \\udc00 input" and body["errors"][0]["loc"][1] == "k\\ud800"
    assert body["instance"] == "/v1/x\\udc00" and body["weird"] == {"\\udfff": "inf"}

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    last_resort = ProblemResponse({"type": "t", "title": "T", "status": 422, "x": Unprintable()})
    assert json.loads(bytes(last_resort.body)) == {"type": "t", "title": "T", "status": 422}


def _keep_alive_exchange(server: Server, requests: list[tuple[str, str, bytes]]) -> list[int]:
    """The requests on one HTTP/1.1 connection; fails if the server closes it in between."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    statuses = []
    try:
        conn.connect()
        sock = conn.sock
        headers = {"Authorization": f"Bearer {server.admin_token}", **JSON}
        for method, path, body in requests:
            conn.request(method, path, body=body or None, headers=headers)
            response = conn.getresponse()
            response.read()
            assert not response.will_close, f"{method} {path}: the server closes the connection"
            assert conn.sock is sock, "a new connection was opened"
            statuses.append(response.status)
    finally:
        conn.close()
    return statuses


@pytest.mark.postgres
def test_after_a_lone_surrogate_the_keep_alive_connection_serves_the_next_request(
    postgres_db_url: str,
) -> None:
    with live_server(postgres_db_url, workers=1) as server:
        requests = [("GET", "/v1/hosts", b"")]
        for name, surrogate in SURROGATES.items():
            raw = json.dumps(host_body(f"{name}-{MARK}")).encode()
            requests += [
                ("POST", "/v1/hosts", raw.replace(MARK.encode(), surrogate)),
                ("GET", "/v1/hosts", b""),
            ]
        statuses = _keep_alive_exchange(server, requests)
        assert statuses == [200] + [422, 200] * len(SURROGATES)


# --- 5. 422 error lists are capped --------------------------------------------------------------


def test_a_thousand_unknown_keys_get_fifty_located_errors_and_a_count(client: ApiClient) -> None:
    body = {f"k{i}": 0 for i in range(1000)}
    problem = _problem(client.post("/v1/hosts", json=body), 422)
    total = int(problem["detail"].split()[0])
    assert total == 1003  # the unknown keys and the three missing fields
    assert len(problem["errors"]) == MAX_ERRORS == 50
    assert problem["errors_omitted"] == total - MAX_ERRORS
    assert all(e["loc"][0] == "body" for e in problem["errors"])


def test_ninety_thousand_unknown_keys_are_one_error(client: ApiClient) -> None:
    body = b"{" + b",".join(b'"k%d":0' % i for i in range(90_000)) + b"}"
    r = client.post("/v1/hosts", content=body, headers=JSON)
    problem = _problem(r, 422)
    assert problem["errors"] == [
        {"loc": ["body"], "msg": "a JSON object has more than 1024 members"}
    ]
    assert len(r.content) < 1000


def test_a_short_error_list_has_no_omitted_count(client: ApiClient) -> None:
    problem = _problem(client.post("/v1/hosts", json={"name": "x"}), 422)
    assert 0 < len(problem["errors"]) < MAX_ERRORS and "errors_omitted" not in problem


def test_the_problem_schema_documents_the_cap(client: ApiClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["Problem"]
    omitted = schema["properties"]["errors_omitted"]
    assert "integer" in json.dumps(omitted) and "errors" in omitted["description"]
    assert str(MAX_ERRORS) in schema["properties"]["errors"]["description"]
