"""Hostile input: never a 5xx, never more than linear work before authentication, and every
refusal a located RFC 9457 problem. One test per finding of the hostile pass, on both backends."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from service.api.body_checks import BodyIssue, check_json_body, json_depth
from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body
from tests.reliability.hostile import client, live_server

pytestmark = pytest.mark.reliability

HOSTILE_MIB = b'"' + b'\\"' * ((1 << 19) - 1)  # an unterminated string, just under 1 MiB


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


# --- 1. the pre-authentication stall ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b'[[["a[b"]]]', 3),
        (b'{"a":"\\\\"}', 1),
        (b'{"a":"\\"[[["}', 1),
        (b'["\\\\\\"[["]', 1),
        (b'{"a":"\\\\\\\\[["}', 1),
        (b'"x"', 0),
        (b"[" * 40 + b"]" * 40, 40),
    ],
)
def test_depth_ignores_brackets_in_strings_whatever_the_escapes(text: bytes, depth: int) -> None:
    json.loads(text)
    assert json_depth(text) == depth


def test_body_checks_refuse_duplicates_surrogates_nul_and_depth() -> None:
    for body, loc in [
        (b'{"a":1,"a":2}', ["body"]),
        (b'{"name":"x\\ud800"}', ["body", "name"]),
        (b'{"n":["ok","a\\u0000"]}', ["body", "n", 1]),
        (b"[" * 1000 + b"]" * 1000, ["body"]),
        (b"[" * 200_000, ["body"]),  # not JSON, and deeper than the parser's own limit
        (HOSTILE_MIB, ["body", 0]),  # not JSON: the unterminated string starts at 0
    ]:
        with pytest.raises(BodyIssue) as exc:
            check_json_body(body, 32)
        assert exc.value.loc == loc
    check_json_body(b'{"e":"\\ud83d\\ude00"}', 32)  # a surrogate pair is text


@pytest.mark.postgres
def test_a_hostile_mib_is_refused_at_once_and_healthz_keeps_answering(
    postgres_db_url: str,
) -> None:
    with (
        live_server(postgres_db_url, workers=1) as server,
        client(server) as http,
        httpx.Client(base_url=server.url, timeout=60) as anon,
    ):
        headers = {"Content-Type": "application/json"}
        r = anon.post("/v1/hosts", content=HOSTILE_MIB, headers=headers)
        _problem(r, 401)  # unauthenticated: refused before its body is parsed
        assert anon.post("/v1/hosts", content=b'{"name":', headers=headers).status_code == 401
        r = http.post("/v1/hosts", content=HOSTILE_MIB, headers=headers)
        _problem(r, 422)  # authenticated: the parser's linear refusal
        start = time.monotonic()
        assert anon.get("/healthz").status_code == 200
        assert time.monotonic() - start < 30, "the event loop is free"


# --- 4. the last 5xx ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/hosts", "/v1/domains"])
def test_a_lone_surrogate_in_a_name_is_a_located_422(client: ApiClient, path: str) -> None:
    raw = json.dumps(host_body("x") if path == "/v1/hosts" else domain_body("x", [1024]))
    raw = raw.replace('"name": "x"', '"name": "x\\ud800"')
    r = client.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert _problem(r, 422)["errors"][0]["loc"] == ["body", "name"]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("cursor=2147483648", "cursor"),
        ("since=2147483648", "since"),
        ("since=4611686018427387904", "since"),
        ("subject_id=%00", "subject_id"),
        ("subject_id=nope", "subject_id"),
    ],
)
def test_event_parameters_out_of_range_are_422_naming_them(
    client: ApiClient, query: str, param: str
) -> None:
    body = _problem(client.get(f"/v1/events?{query}"), 422)
    assert any(e["loc"][-1] == param for e in body["errors"]), body


@pytest.mark.postgres
def test_after_a_refusal_the_keep_alive_connection_still_serves(postgres_db_url: str) -> None:
    with live_server(postgres_db_url, workers=1) as server, client(server) as http:
        for query in ("cursor=2147483648", "subject_id=%00", "since=2147483648"):
            assert http.get(f"/v1/events?{query}").status_code == 422
        raw = json.dumps(host_body("k")).replace('"name": "k"', '"name": "k\\ud800"')
        r = http.post("/v1/hosts", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 422
        assert http.get("/v1/events").status_code == 200  # same pooled connection


# --- the weaknesses closed in the same pass ---------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("text/plain", b'{"name": "a"}'),
        ("application/xml", b"<host><name>a</name></host>"),
        ("application/x-www-form-urlencoded", b"name=a"),
        (None, b'{"name": "a"}'),
    ],
)
def test_bodies_that_are_not_json_are_415(
    client: ApiClient, content_type: str | None, content: bytes
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    _problem(client.post("/v1/hosts", content=content, headers=headers), 415)


def test_duplicate_keys_are_422(client: ApiClient) -> None:
    raw = b'{"name": "a", "name": "b", "pnodes": [], "distances": []}'
    r = client.post("/v1/hosts", content=raw, headers={"Content-Type": "application/json"})
    assert "duplicate key 'name'" in _problem(r, 422)["detail"]


def test_if_match_is_a_strong_comparison(client: ApiClient) -> None:
    host = client.post("/v1/hosts", json=host_body("etag")).json()
    url = f"/v1/hosts/{host['id']}"
    weak = client.patch(url, json={"state": "maintenance"}, headers={"If-Match": 'W/"1"'})
    _problem(weak, 412)
    strong = client.patch(url, json={"state": "maintenance"}, headers={"If-Match": '"1"'})
    assert strong.status_code == 200, strong.text


def test_head_answers_on_every_get(client: ApiClient) -> None:
    host = client.post("/v1/hosts", json=host_body("head")).json()
    for path in ("/healthz", "/v1/hosts", f"/v1/hosts/{host['id']}", "/v1/events", "/docs"):
        got, head = client.get(path), client.request("HEAD", path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("   ", "blank"),
        ("vm\u202eexe.txt", "U+202E"),  # right-to-left override
        ("vm\u200b1", "U+200B"),  # zero-width space
        ("vm\x07", "U+0007"),
        ("a/b", "U+002F"),
    ],
)
def test_names_refuse_blank_control_and_format_characters(
    client: ApiClient, name: str, why: str
) -> None:
    body = _problem(client.post("/v1/hosts", json=host_body(name)), 422)
    assert why in json.dumps(body["errors"]), body


def test_names_are_unique_on_their_nfc_form(client: ApiClient) -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    first = client.post("/v1/hosts", json=host_body(composed))
    assert first.status_code == 201 and first.json()["name"] == composed
    _problem(client.post("/v1/hosts", json=host_body(decomposed)), 409)


@pytest.mark.parametrize("key", ["00", "+1", "\uff10", "1.0", " 1"])
def test_squeeze_pnode_keys_are_canonical_decimal(client: ApiClient, key: str) -> None:
    host = client.post("/v1/hosts", json=host_body("sq-keys")).json()
    r = client.post(f"/v1/hosts/{host['id']}/squeeze", json={"free_mib": {key: 128}})
    assert _problem(r, 422)["errors"][0]["loc"][:3] == ["body", "free_mib", key]


def test_a_malformed_id_in_a_body_is_422_not_404(client: ApiClient) -> None:
    r = client.post("/v1/domains", json=domain_body("vm", [1024], host_id="nope"))
    assert _problem(r, 422)["errors"][0]["loc"] == ["body", "host_id"]
    r = client.post("/v1/migrations/plan", json={"domain_id": "x", "destination_host_id": "y"})
    assert {tuple(e["loc"]) for e in _problem(r, 422)["errors"]} == {
        ("body", "domain_id"),
        ("body", "destination_host_id"),
    }


def test_a_get_on_a_post_only_path_is_405_with_allow(client: ApiClient) -> None:
    for path in ("/v1/migrations/plan", "/ui/login"):
        r = client.request("DELETE" if path == "/ui/login" else "GET", path)
        assert _problem(r, 405)["status"] == 405
        assert "POST" in r.headers["allow"]


def test_metrics_are_not_public_by_default(client: ApiClient) -> None:
    _problem(client.get("/metrics", token=None), 401)
