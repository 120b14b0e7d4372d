"""The hostile client's first hour (issue 22, items 1, 2, 4 and 5): lone surrogates in any body,
X-Forwarded-For spoofing, the unauthenticated sign-in form and unbounded error lists."""

from __future__ import annotations

import http.client
import json
import math
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from numa_balloon_testing.server import Server
from service.api.forwarded import TrustedProxies
from service.api.problems import MAX_ERRORS, ProblemResponse, render
from service.app import create_app
from service.errors import InvalidInput
from service.settings import Settings, parse_networks
from tests.api.client import ApiClient, api_client
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


@pytest.fixture
def make_app(db_url: str) -> Iterator[Callable[..., FastAPI]]:
    apps: list[FastAPI] = []

    def make(**settings: Any) -> FastAPI:
        app = create_app(Settings(database_url=db_url, admin_token=ADMIN_TOKEN, **settings))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.state.engine.dispose()


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


# --- 2. X-Forwarded-For: believed from trusted proxies only -------------------------------------


def test_the_right_most_untrusted_hop_is_the_client() -> None:
    proxies = TrustedProxies(parse_networks("127.0.0.1, 10.0.0.0/8"))
    assert proxies.client("192.0.2.7", ["6.6.6.6"]) == "192.0.2.7"  # not a proxy: its own
    assert proxies.client("127.0.0.1", ["6.6.6.6, 203.0.113.9"]) == "203.0.113.9"
    assert proxies.client("127.0.0.1", ["6.6.6.6, 203.0.113.9, 10.1.2.3"]) == "203.0.113.9"
    assert proxies.client("127.0.0.1", ["6.6.6.6", "203.0.113.9"]) == "203.0.113.9"
    assert proxies.client("127.0.0.1", ["10.1.1.1, 10.2.2.2"]) == "10.1.1.1"  # all trusted
    assert proxies.client("127.0.0.1", ["6.6.6.6, not-an-ip, 10.1.2.3"]) == "10.1.2.3"
    assert proxies.client("127.0.0.1", []) == "127.0.0.1"
    assert not TrustedProxies(parse_networks("")).trusts("127.0.0.1")
    with pytest.raises(ValueError, match=r"10\.0\.0\.1/8"):
        Settings(trusted_proxies="10.0.0.1/8")  # host bits set: a typo, refused at start-up


def _bad(c: ApiClient, forwarded_for: str | None = None, token: str = "nbk_guess") -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return c.get("/v1/cluster", token=token, headers=headers).status_code


def test_without_trusted_proxies_x_forwarded_for_is_ignored(
    make_app: Callable[..., FastAPI],
) -> None:
    with api_client(make_app(failed_auth_per_min=3), ADMIN_TOKEN) as c:
        rotated = [_bad(c, f"198.51.100.{i}") for i in range(6)]
        assert rotated == [401, 401, 401, 429, 429, 429]  # all counted against the peer


def test_a_failed_auth_limit_never_locks_out_a_valid_credential(
    make_app: Callable[..., FastAPI],
) -> None:
    with api_client(make_app(failed_auth_per_min=3), ADMIN_TOKEN) as c:
        assert [_bad(c) for _ in range(5)] == [401, 401, 401, 429, 429]
        assert c.get("/v1/cluster").status_code == 200  # the admin token, same address
        key = c.post("/v1/api-keys", json={"name": "same-nat", "role": "viewer"}).json()
        assert c.get("/v1/cluster", token=key["secret"]).status_code == 200
        malformed = c.get("/v1/cluster", token=None, headers={"Authorization": "Basic x"})
        assert malformed.status_code == 429  # a malformed header is a failure too


def test_behind_a_trusted_proxy_the_client_is_the_right_most_untrusted_hop(
    make_app: Callable[..., FastAPI],
) -> None:
    # The in-process transport's peer is 127.0.0.1: here, the proxy.
    app = make_app(failed_auth_per_min=3, trusted_proxies="127.0.0.1")
    with api_client(app, ADMIN_TOKEN) as c:
        attacker = [_bad(c, f"198.51.100.{i}, 203.0.113.9") for i in range(4)]
        assert attacker == [401, 401, 401, 429]
        r = c.get("/v1/cluster", token="nbk_guess", headers={"X-Forwarded-For": "203.0.113.9"})
        assert "203.0.113.9" in _problem(r, 429)["detail"]
        # The address the attacker wrote, and anyone else's, are not locked.
        assert _bad(c, "198.51.100.1") == 401
        assert _bad(c, "192.0.2.50") == 401


def _dockerfile_uvicorn_flags() -> list[str]:
    """The uvicorn options the image runs with, but --host and --port."""
    cmd = json.loads(next(line for line in (ROOT / "Dockerfile").read_text().splitlines()
                          if line.startswith("CMD "))[4:])  # fmt: skip
    words = shlex.split(cmd[-1].split("exec ", 1)[1])
    assert words[:2] == ["uvicorn", "service.app:create_app"], words
    flags, rest = [], iter(words[2:])
    for word in rest:
        if word in ("--host", "--port"):
            next(rest)
        else:
            flags.append(word)
    return flags


class ShippedServer(Server):
    """uvicorn with the Dockerfile's own options (only the address differs)."""

    def start(self, timeout_s: float = 60) -> None:
        env = dict(
            os.environ,
            NUMA_BALLOON_DATABASE_URL=self.db_url,
            NUMA_BALLOON_ADMIN_TOKEN=self.admin_token,
            **self.extra_env,
        )
        env.pop("FORWARDED_ALLOW_IPS", None)
        cmd = [
            sys.executable, "-m", "uvicorn", "service.app:create_app",
            *_dockerfile_uvicorn_flags(), "--host", "127.0.0.1", "--port", str(self.port),
            "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            assert self.proc.poll() is None, f"uvicorn exited with {self.proc.returncode}"
            assert time.monotonic() < deadline, "uvicorn did not become ready"
            time.sleep(0.1)


@contextmanager
def _from(server: Server, address: str) -> Iterator[httpx.Client]:
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(base_url=server.url, transport=transport, timeout=60) as c:
        yield c


@pytest.mark.postgres
def test_the_shipped_server_counts_the_socket_peer_whatever_x_forwarded_for_says(
    postgres_db_url: str,
) -> None:
    with ShippedServer(postgres_db_url) as server, _from(server, "127.0.0.1") as attacker:
        # 160 bad tokens, each claiming another address, then 40 naming the victim's.
        claimed = [f"10.0.{i}.1" for i in range(160)] + ["127.0.0.2"] * 40
        statuses = [
            attacker.get(
                "/v1/cluster",
                headers={"Authorization": "Bearer nbk_guess", "X-Forwarded-For": address},
            ).status_code
            for address in claimed
        ]
        assert set(statuses) == {401, 429} and statuses.count(429) >= 150, statuses
        # The victim (127.0.0.2) kept its own budget, and the limit never refuses a valid token.
        with _from(server, "127.0.0.2") as victim:
            bearer = {"Authorization": f"Bearer {server.admin_token}"}
            assert victim.get("/v1/cluster", headers=bearer).status_code == 200
            wrong = victim.get("/v1/cluster", headers={"Authorization": "Bearer nbk_typo"})
            assert wrong.status_code == 401
        # And the attacker's own valid token still works.
        bearer = {"Authorization": f"Bearer {server.admin_token}"}
        assert attacker.get("/v1/cluster", headers=bearer).status_code == 200


def test_every_shipped_command_line_leaves_x_forwarded_for_to_the_service() -> None:
    assert "--no-proxy-headers" in _dockerfile_uvicorn_flags()
    run = (ROOT / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "uvicorn" in run and "--no-proxy-headers" in run
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in nginx
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "NUMA_BALLOON_TRUSTED_PROXIES: 172.28.0.10" in compose
    assert "ipv4_address: 172.28.0.10" in compose


# --- 4. /ui/login before authentication ---------------------------------------------------------

MIB_FORM = b"&".join([b"a=1"] * 262_000)


def test_an_unauthenticated_mib_form_is_refused_before_it_is_read(client: ApiClient) -> None:
    r = client.post("/ui/login", token=None, content=MIB_FORM, headers=FORM)
    assert "4096 bytes" in _problem(r, 413)["detail"]

    async def streamed() -> Any:  # no Content-Length: refused once 4 KiB have arrived
        for _ in range(256):
            yield b"a=1&" * 1024

    r = client.post("/ui/login", token=None, content=streamed(), headers=FORM)
    _problem(r, 413)


def test_json_bodies_are_not_parsed_before_authentication(client: ApiClient) -> None:
    for body in (b'{"key": "a", "key": "b"}', b"[" * 40 + b"]" * 40, b'{"k": "\\udc00"}'):
        for path in ("/ui/login", "/ui/logout"):
            r = client.post(path, token=None, content=body, headers=JSON)
            assert r.status_code in (401, 303), (path, body, r.text)  # never the body's 422
    assert _problem(client.post("/ui/login", token=None, content=b"{" * 5000, headers=JSON), 413)


def test_failed_sign_ins_are_counted_and_a_valid_key_still_signs_in(
    make_app: Callable[..., FastAPI],
) -> None:
    with api_client(make_app(failed_auth_per_min=3), ADMIN_TOKEN) as c:
        key = c.post("/v1/api-keys", json={"name": "ui", "role": "viewer"}).json()["secret"]

        def login(form: str) -> int:
            return c.post("/ui/login", token=None, content=form, headers=FORM).status_code

        too_many_fields = "&".join(f"f{i}=1" for i in range(5))
        assert [login("key=nbk_wrong"), login(""), login(too_many_fields)] == [401, 401, 422]
        assert login("key=nbk_wrong") == 429
        assert _bad(c) == 429  # the same budget as bearer tokens
        assert login(f"key={key}") == 303


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
