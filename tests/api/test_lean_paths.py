"""The lease renewal's shortcuts (issue 25) change how, never what: the prefix index finds the
route the linear scan finds, and a renewal whose plain connection fails answers as the session's
path does."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text

from service.api.authentication import match, route_table
from service.db import raw
from tests.api.client import ApiClient
from tests.api.factories import host_body


def _linear(app: FastAPI, method: str, path: str) -> tuple[str | None, dict[str, str]]:
    for op in route_table(app):
        found = op.regex.match(path)
        if found is None:
            continue
        if op.methods is None or method in op.methods or (method == "HEAD" and "GET" in op.methods):
            return op.name, found.groupdict()
    return None, {}


def test_the_prefix_index_finds_what_the_linear_scan_finds(app: FastAPI) -> None:
    table = route_table(app)
    paths = {"/", "/v1", "/v1/", "/v1/x/y/z", "/docs/x.js", "/v1/hostsX", "/v1/hosts/"}
    for route in table:
        filled = re.sub(r"\{[^}]+\}", "abc", route.path_template)
        paths |= {filled, filled + "/", filled + "/extra", filled.replace("abc", "a/b")}
    for path in sorted(paths):
        for method in ("GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"):
            found, params = match(table, method, path)
            name = found.name if found is not None else None
            assert (name, params) == _linear(app, method, path), (method, path)


@pytest.mark.postgres
def test_a_renewal_whose_plain_connection_fails_takes_the_sessions_path(
    pg_client: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = pg_client.post("/v1/hosts", json=host_body("plain", n=1)).json()
    url = f"/v1/agent/hosts/{host['id']}/lease"
    first = pg_client.put(url, token=host["agent_token"], json={"seq": 0})
    assert first.status_code == 200, first.text
    plain = pg_client.app.state.db.plain
    pg_client.call(plain.open)  # as a worker's lifespan does, on the app's event loop
    try:
        # Renewals there commit without waiting for the WAL flush (ADR 0009).
        shown = pg_client.call(lambda: plain.one_row(text("SHOW synchronous_commit"), {}))
        assert shown == ("off",)
        used: list[str] = []
        one_row = raw.PlainConnections.one_row

        async def counted(
            self: raw.PlainConnections, stmt: Any, values: dict[str, Any]
        ) -> tuple[Any, ...] | None:
            used.append(type(stmt).__name__)
            return await one_row(self, stmt, values)

        monkeypatch.setattr(raw.PlainConnections, "one_row", counted)
        ok = pg_client.put(url, token=host["agent_token"], json={"seq": 1})
        assert ok.status_code == 200, ok.text
        assert used == ["Select", "Update"]  # the token, the renewal: both on plain connections

        async def away(*_: object) -> None:
            raise raw.Unavailable("the plain connection is away")

        monkeypatch.setattr(raw.PlainConnections, "one_row", away)
        again = pg_client.put(url, token=host["agent_token"], json={"seq": 2})
        assert again.status_code == 200, again.text
        assert again.json()["report"] == ok.json()["report"] is True  # nothing reported yet
        other = pg_client.post("/v1/hosts", json=host_body("other", n=1)).json()
        assert pg_client.put(url, token=other["agent_token"]).status_code == 403
        assert pg_client.put(url, token="nbh_unknown").status_code == 401
    finally:
        pg_client.call(plain.close)
