"""The topology view as a newcomer meets it (issue #22, item 13): no error before anything was
submitted, heat maps that carry their numbers and a scale, held memory explained, and a page
that keeps itself current from the event stream (checked in headless Chromium against a real
uvicorn), falling back to polling without it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from demo.local import LocalService
from tests.api.client import ApiClient
from tests.cdp import Browser
from tests.conftest import ADMIN_TOKEN
from tests.exports.conftest import _require_tool
from tests.test_ui import FORM, HTML, chromium, seed, ui

__all__ = ["ui"]  # the fixture


def test_a_first_visit_shows_the_sign_in_form_without_an_error(ui: ApiClient) -> None:
    first = ui.get("/ui", headers=HTML)
    assert first.status_code == 401 and 'action="/ui/login"' in first.text
    assert 'class="err"' not in first.text
    ended = ui.get("/ui", headers={**HTML, "Cookie": "nb_ui_session=expired.or.forged"})
    assert ended.status_code == 401 and 'class="err"' not in ended.text
    assert '<p class="note">Your session ended; sign in again.</p>' in ended.text
    refused = ui.get("/ui", headers=HTML, token="not-a-token-at-all")
    assert refused.status_code == 401 and '<p class="err">' in refused.text
    wrong = ui.post("/ui/login", content="key=wrong-token-123", headers={**FORM, **HTML})
    assert wrong.status_code == 401 and '<p class="err">' in wrong.text


def _heat_map(html: str, host: str) -> str:
    found = re.search(rf'<svg[^>]*aria-label="SLIT distances of {host}".*?</svg>', html, re.S)
    assert found, host
    return found.group(0)


def test_every_heat_map_cell_shows_its_distance_and_the_map_its_scale(ui: ApiClient) -> None:
    seed(ui)
    slit = [
        [10 if i == j else 12 if i // 4 == j // 4 else 32 for j in range(16)] for i in range(16)
    ]
    r = ui.post(
        "/v1/hosts",
        token=ADMIN_TOKEN,
        json={
            "name": "sixteen",
            "pnodes": [{"memory_mib": 4096, "cpus": 4}] * 16,
            "distances": slit,
        },
    )
    assert r.status_code == 201, r.text
    html = ui.get("/ui", token=ADMIN_TOKEN).text
    heat = _heat_map(html, "sixteen")
    cells = _cells(heat)
    assert len(cells) == 256
    assert all(int(shown) == slit[int(i)][int(j)] == int(v) for i, j, v, shown in cells)
    # The axes name the pnodes; the scale shows each colour's distance, inside the picture.
    assert heat.count('fill="#667" text-anchor="middle">15</text>') == 1
    assert re.findall(r">(\d+\+?)</text>", heat)[-5:] == ["10", "12", "16", "21", "32+"]
    assert "SLIT distances (10 = local)" in html
    two = _heat_map(html, "compute-&lt;07&gt;")
    assert [int(shown) for *_, shown in _cells(two)] == [10, 21, 21, 10]
    width = int(re.search(r'width="(\d+)"', two).group(1))  # type: ignore[union-attr]
    scale_right = max(int(x) + 24 for x in re.findall(r'<rect x="(\d+)" y="\d+" width="24"', two))
    assert scale_right <= width


def _cells(heat: str) -> list[tuple[str, str, str, str]]:
    """(row, column, distance in the tooltip, distance written in the cell) per cell."""
    found: list[tuple[str, str, str, str]] = re.findall(
        r"<rect [^>]*><title>pnode (\d+) → pnode (\d+): (\d+)</title></rect>"
        r"<text [^>]*>(\d+)</text>",
        heat,
    )
    return found


def test_memory_held_above_target_is_shown_and_explained(ui: ApiClient) -> None:
    tokens = seed(ui)
    dom = ui.get("/v1/domains", token=ADMIN_TOKEN).json()["items"][0]
    report = {"vnodes": [{"index": 0, "actual_mib": 2048}, {"index": 1, "actual_mib": 2048}]}
    assert ui.put("/v1/guest/balloon", token=tokens["guest"], json=report).status_code == 200
    html = ui.get("/ui", token=ADMIN_TOKEN).text
    assert "held above target" not in html
    # A lower target: the guest still holds 4 GiB until its driver gives 2 GiB back.
    r = ui.put(f"/v1/domains/{dom['id']}/target", token=ADMIN_TOKEN, json={"target_mib": 2048})
    assert r.status_code == 200, r.text
    html = ui.get("/ui", token=ADMIN_TOKEN).text
    assert '<i class="sw" style="background:#5b6170"></i>held above target</span>' in html
    note = re.search(r'<p class="note">Held above target: (.*?)</p>', html)
    assert note and note.group(1).startswith("2 GiB that guests still hold")
    assert "balloon drivers have not given it back" in note.group(1)


# -- in a browser ------------------------------------------------------------------------------


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    binary = chromium()
    _require_tool(binary is not None, "chromium (Debian package chromium)")
    assert binary is not None
    b = Browser(binary, tmp_path / "profile")
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LocalService]:
    with LocalService(tmp_path / "svc", token=ADMIN_TOKEN) as svc:
        yield svc


def _signed_in(browser: Browser, svc: LocalService, http: httpx.Client) -> str:
    """A session cookie for the admin token, set in the browser."""
    r = http.post("/ui/login", content=f"key={ADMIN_TOKEN}", headers=FORM)
    assert r.status_code == 303, r.text
    value = r.cookies["nb_ui_session"]
    page = browser.page()
    cookie = {"name": "nb_ui_session", "value": value, "url": f"{svc.url}/ui", "path": "/ui"}
    assert page.send("Network.setCookie", {**cookie, "httpOnly": True, "sameSite": "Strict"})
    return page.session_id


def test_the_page_refreshes_itself_from_the_event_stream(
    service: LocalService, browser: Browser
) -> None:
    with httpx.Client(base_url=service.url, timeout=30) as http:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        host = http.post(
            "/v1/hosts",
            headers=admin,
            json={"name": "h1", "pnodes": [{"memory_mib": 8192, "cpus": 4}], "distances": [[10]]},
        ).json()
        from tests.cdp import Page

        page = Page(browser, _signed_in(browser, service, http))
        page.send("Page.navigate", {"url": f"{service.url}/ui"})
        page.wait_for(
            "document.getElementById('live') && "
            "document.getElementById('live').textContent === 'live'"
        )
        assert "1 hosts" in page.eval("document.getElementById('totals').textContent")
        page.eval("window.stillTheSamePage = true")
        body = {
            "name": "late-comer",
            "host_id": host["id"],
            "memory": {"dynamic_min_mib": 1024, "dynamic_max_mib": 2048, "target_mib": 2048},
            "vnodes": [{"size_mib": 2048, "vcpus": [0], "distances": [10]}],
        }
        assert http.post("/v1/domains", headers=admin, json=body).status_code == 201
        page.wait_for("document.getElementById('content').textContent.includes('late-comer')")
        assert "1 domains" in page.eval("document.getElementById('totals').textContent")
        assert page.eval("window.stillTheSamePage") is True  # swapped in place, not reloaded
        assert page.eval("document.getElementById('live').textContent") == "live"


def test_without_an_event_stream_the_page_polls(service: LocalService, browser: Browser) -> None:
    with httpx.Client(base_url=service.url, timeout=30) as http:
        from tests.cdp import Page

        page = Page(browser, _signed_in(browser, service, http))
        page.send("Page.enable")  # scripts for new documents run only with the domain enabled
        page.send(
            "Page.addScriptToEvaluateOnNewDocument", {"source": "window.EventSource = undefined;"}
        )
        page.send("Page.navigate", {"url": f"{service.url}/ui"})
        text = page.wait_for(
            "document.getElementById('live') && "
            "document.getElementById('live').textContent.startsWith('refreshing every 30 s (') && "
            "document.getElementById('live').textContent"
        )
        assert text == "refreshing every 30 s (no event stream in this browser)"
