"""The topology view at /ui: admin only, server-rendered, and a real cluster rendered in Chromium.

The Chromium test plays the demo story against a real uvicorn, leaves one migration in flight,
and screenshots the page; with NB_UPDATE_DOCS=1 it also refreshes docs/topology.png.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from demo.local import LocalService
from demo.story import Story
from numa_balloon_client import Client
from service.app import create_app
from service.settings import Settings
from tests.api.client import ApiClient, api_client
from tests.conftest import ADMIN_TOKEN
from tests.exports.conftest import _require_tool

ROOT = Path(__file__).resolve().parents[1]
HTML = {"Accept": "text/html"}
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


@pytest.fixture
def ui(sqlite_url: str) -> Iterator[ApiClient]:
    from tests.conftest import reset_database

    reset_database(sqlite_url)
    app: FastAPI = create_app(Settings(database_url=sqlite_url, admin_token=ADMIN_TOKEN))
    with api_client(app, None) as c:
        yield c
    app.state.engine.dispose()


def seed(c: ApiClient) -> dict[str, str]:
    host = c.post(
        "/v1/hosts",
        token=ADMIN_TOKEN,
        json={
            "name": "compute-<07>",
            "pnodes": [{"memory_mib": 8192, "cpus": 4}] * 2,
            "distances": [[10, 21], [21, 10]],
        },
    ).json()
    dom = c.post(
        "/v1/domains",
        token=ADMIN_TOKEN,
        json={
            "name": "db-01",
            "host_id": host["id"],
            "memory": {"dynamic_min_mib": 1024, "dynamic_max_mib": 4096, "target_mib": 4096},
            "vnodes": [
                {"size_mib": 2048, "vcpus": [0], "distances": [10, 21]},
                {"size_mib": 2048, "vcpus": [1], "distances": [21, 10]},
            ],
        },
    ).json()
    return {"agent": host["agent_token"], "guest": dom["guest_token"]}


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def make_key(c: ApiClient, name: str, role: str) -> dict[str, str]:
    r = c.post("/v1/api-keys", token=ADMIN_TOKEN, json={"name": name, "role": role})
    assert r.status_code == 201, r.text
    body: dict[str, str] = r.json()
    return body


def sign_in(c: ApiClient, secret: str) -> str:
    """The session cookie's value after a form sign-in."""
    r = c.post("/ui/login", content=f"key={secret}", headers=FORM)
    assert r.status_code == 303 and r.headers["location"] == "/ui", r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "Max-Age=3600" in cookie
    return cookie.split(";")[0].split("=", 1)[1]


def test_the_view_needs_a_key_of_a_role_that_may_read(ui: ApiClient) -> None:
    tokens = seed(ui)
    r = ui.get("/ui")
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    page = ui.get("/ui", headers=HTML)
    assert page.status_code == 401 and '<form method="post" action="/ui/login"' in page.text
    enroll = make_key(ui, "agent-enroll", "enroll")["secret"]
    for token in (tokens["agent"], tokens["guest"], enroll):
        assert ui.get("/ui", token=token).status_code == 403
        assert ui.get("/ui", token=token, headers=HTML).status_code == 403
    assert ui.get("/ui", token="not-a-token-at-all").status_code == 401
    assert ui.get("/ui/login").status_code == 200
    bad = ui.post("/ui/login", content="key=wrong-token-123", headers={**FORM, **HTML})
    assert bad.status_code == 401 and "not valid" in bad.text
    assert "set-cookie" not in bad.headers
    for token in (tokens["agent"], enroll):
        refused = ui.post("/ui/login", content=f"key={token}", headers={**FORM, **HTML})
        assert refused.status_code == 403 and "set-cookie" not in refused.headers


def test_a_viewer_key_signs_in_and_the_page_names_it(ui: ApiClient) -> None:
    seed(ui)
    key = make_key(ui, "wall-screen", "viewer")
    value = sign_in(ui, key["secret"])
    # The cookie names the key; it holds neither the secret nor anything it could be found from.
    assert key["secret"] not in value and key["secret"].removeprefix("nbk_") not in value
    page = ui.get("/ui", headers={"Cookie": f"nb_ui_session={value}", **HTML})
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    html = page.text
    assert "key wall-screen · viewer" in html
    assert "compute-&lt;07&gt;" in html and "<07>" not in html  # escaped
    assert html.count("<svg") == 2  # one host: its pnode bars and its SLIT heat map
    assert "db-01" in html
    # One inline script (it keeps the page current), allowed by its hash and nothing else.
    (script,) = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    sha = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = page.headers["content-security-policy"]
    assert f"script-src 'sha256-{sha}';" in csp and "unsafe" not in csp.split("style-src")[0]
    out = ui.post("/ui/logout")
    assert out.status_code == 303 and 'nb_ui_session=""' in out.headers["set-cookie"]


def test_a_session_ends_with_its_key(ui: ApiClient) -> None:
    """Revoking or rotating the key ends the session on the next request; so does tampering."""
    seed(ui)
    for end in ("revoke", "rotate"):
        key = make_key(ui, f"screen-{end}", "viewer")
        cookie = {"Cookie": f"nb_ui_session={sign_in(ui, key['secret'])}"}
        assert ui.get("/ui", headers=cookie).status_code == 200
        if end == "revoke":
            assert ui.delete(f"/v1/api-keys/{key['id']}", token=ADMIN_TOKEN).status_code == 204
        else:
            r = ui.post(f"/v1/api-keys/{key['id']}/rotate", token=ADMIN_TOKEN)
            assert r.status_code == 200
        assert ui.get("/ui", headers=cookie).status_code == 401
    key = make_key(ui, "screen-tamper", "viewer")
    value = sign_in(ui, key["secret"])
    forged = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    assert ui.get("/ui", headers={"Cookie": f"nb_ui_session={forged}"}).status_code == 401


def test_the_admin_token_signs_in_too(ui: ApiClient) -> None:
    seed(ui)
    value = sign_in(ui, ADMIN_TOKEN)
    assert ADMIN_TOKEN not in value
    page = ui.get("/ui", headers={"Cookie": f"nb_ui_session={value}"})
    assert page.status_code == 200 and "admin token · admin" in page.text


def test_security_headers_on_the_pages(ui: ApiClient) -> None:
    seed(ui)
    for path in ("/ui/login", "/docs", "/redoc"):
        r = ui.get(path)
        assert r.status_code == 200
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp
        script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
        assert "unsafe-inline" not in script_src and "unsafe-eval" not in script_src
    assert "script-src 'none'" in ui.get("/ui/login").headers["content-security-policy"]
    docs = ui.get("/docs")
    # Swagger UI's one inline script is allowed by its hash, and nothing else inline.
    import base64
    import hashlib
    import re

    inline = re.findall(r"<script>(.*?)</script>", docs.text, re.DOTALL)
    assert inline
    for body in inline:
        sha = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{sha}'" in docs.headers["content-security-policy"]
    assert ui.get("/healthz").headers["x-content-type-options"] == "nosniff"


def test_the_page_shows_claims_and_migrations_in_flight(ui: ApiClient) -> None:
    seed(ui)
    four = ui.post(
        "/v1/hosts",
        token=ADMIN_TOKEN,
        json={
            "name": "four",
            "pnodes": [{"memory_mib": 4096, "cpus": 2}] * 4,
            "distances": [[10 if i == j else 12 for j in range(4)] for i in range(4)],
        },
    ).json()
    dom = ui.get("/v1/domains", token=ADMIN_TOKEN).json()["items"][0]
    m = ui.post(
        "/v1/migrations",
        token=ADMIN_TOKEN,
        json={"domain_id": dom["id"], "destination_host_id": four["id"]},
    )
    assert m.status_code == 201, m.text
    html = ui.get("/ui", token=ADMIN_TOKEN).text
    assert "url(#hatch)" in html  # the destination's claims
    assert re.search(
        r"compute-&lt;07&gt; → four</td><td>\w+</td><td><span class='tag fly'>planned", html
    )
    assert "1 migration(s) in flight" in html


def test_the_page_says_whether_failover_protection_holds(ui: ApiClient) -> None:
    seed(ui)
    assert "failover protection off" in ui.get("/ui", token=ADMIN_TOKEN).text
    # one host only: its failure leaves no survivor for db-01
    r = ui.patch("/v1/cluster", token=ADMIN_TOKEN, json={"ha": {"host_failures": 1}})
    assert r.status_code == 200, r.text
    html = ui.get("/ui", token=ADMIN_TOKEN).text
    assert "failover protection BROKEN: 1 domain(s) stranded if 1 host(s) fail" in html
    ui.post(
        "/v1/hosts",
        token=ADMIN_TOKEN,
        json={"name": "spare", "pnodes": [{"memory_mib": 8192, "cpus": 4}] * 2,
              "distances": [[10, 21], [21, 10]]},
    )  # fmt: skip
    html = ui.get("/ui", token=ADMIN_TOKEN).text
    assert "failover protection holds: tolerates 1 host failure(s), 1 protected" in html


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_a_demo_cluster_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = chromium()
    _require_tool(browser is not None, "chromium (Debian package chromium)")
    assert browser is not None
    with (
        LocalService(tmp_path / "svc") as svc,
        Client(svc.url, svc.token, timeout_s=30) as nb,
        httpx.Client(base_url=svc.url, timeout=30) as http,
    ):
        story = Story(nb, out=io.StringIO())
        story.play()
        # One more migration, left in flight so the picture shows claims and a phase.
        m = nb.start_migration(
            story.guests["cache"].domain_id, story.hosts["epyc-nps4"].id, "rebalance"
        )
        nb.advance_migration(m.id)
        page = http.get("/ui", headers={"Authorization": f"Bearer {svc.token}", **HTML})
    assert page.status_code == 200
    # The page is self-contained (inline CSS, SVG and script, no external resource), so
    # Chromium renders the saved document as it renders the live one.
    assert page.text.count("<script>") == 1 and "src=" not in page.text
    doc = tmp_path / "ui.html"
    doc.write_text(page.text)
    shot = tmp_path / "topology.png"
    args = [
        browser,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1360,1180",
    ]
    dom = subprocess.run(
        [*args, "--dump-dom", doc.as_uri()], capture_output=True, text=True, timeout=90
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<svg") == 8  # 4 hosts x (bars + heat map)
    assert "xeon-4s-snc4" in dom.stdout and "preparing" in dom.stdout
    run = subprocess.run(
        [*args, f"--screenshot={shot}", doc.as_uri()], capture_output=True, timeout=90
    )
    assert run.returncode == 0, run.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    if os.environ.get("NB_UPDATE_DOCS") == "1":
        shutil.copy(shot, ROOT / "docs" / "topology.png")
