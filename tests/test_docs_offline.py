"""Swagger UI and ReDoc work with the network cut: their assets come from an installed package.

Headless Chromium loads /docs from a real uvicorn with every name but the loopback address made
unresolvable and a dead proxy for everything else, then the rendered DOM must list operations.
FastAPI's default /docs (scripts from a CDN) renders an empty page under the same conditions.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from numa_balloon_testing.server import Server
from tests.conftest import ADMIN_TOKEN
from tests.exports.conftest import _require_tool
from tests.test_ui import CHROMIUM_FLAGS, chromium

OFFLINE_FLAGS = (
    # Everything goes to the discard port (loopback is bypassed by default) and no name but the
    # loopback address resolves.
    "--proxy-server=http://127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)
CDN_SWAGGER = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"


def _rendered(browser: str, url: str, profile: Path, *, check: bool = True) -> str:
    run = subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            *OFFLINE_FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def test_docs_render_in_chromium_with_the_network_cut(sqlite_url: str, tmp_path: Path) -> None:
    browser = chromium()
    _require_tool(browser is not None, "chromium (Debian package chromium)")
    assert browser is not None
    with Server(sqlite_url, admin_token=ADMIN_TOKEN) as srv:
        page = httpx.get(f"{srv.url}/docs").text
        assert "cdn." not in page and "https://" not in page.split("<body>")[0]
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
            assert f"/static-offline-docs/{asset}" in page
        dom = _rendered(browser, f"{srv.url}/docs", tmp_path / "profile")
        redoc = _rendered(browser, f"{srv.url}/redoc", tmp_path / "profile-redoc")
    # The cut is real: the CDN FastAPI's default page loads its script from is unreachable.
    assert "SwaggerUIBundle" not in _rendered(browser, CDN_SWAGGER, tmp_path / "cdn", check=False)
    # Swagger UI fetched /openapi.json and drew one block per operation.
    assert dom.count('class="opblock ') >= 30, dom[:2000]
    assert "/v1/hosts/{host_id}/evacuate" in dom
    assert "Drain a host" in dom
    assert "/v1/placements" in redoc and "Drain a host" in redoc
