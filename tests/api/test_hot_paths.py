"""The two routes orchestrators call most, GET a domain and PUT its target, stay lean: a fixed,
small number of SQL statements, every statement's text parsed once by psycopg, and the same
answers (body, ETag) as any other route."""

from __future__ import annotations

from typing import Any

import psycopg._queries as psycopg_queries
import pytest

from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body
from tests.api.statements import count_statements


def _domain(client: ApiClient) -> dict[str, Any]:
    host = client.post("/v1/hosts", json=host_body("hot", n=2, memory_mib=1 << 16)).json()
    r = client.post("/v1/domains", json=domain_body("hot", [2048, 2048], host_id=host["id"]))
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def test_get_domain_is_two_statements_and_matches_the_put(client: ApiClient) -> None:
    d = _domain(client)
    n_put, put = count_statements(
        client, lambda: client.put(f"/v1/domains/{d['id']}/target", json={"target_mib": 3072})
    )
    assert put.status_code == 200, put.text
    n_get, got = count_statements(client, lambda: client.get(f"/v1/domains/{d['id']}"))
    assert n_get == 2  # the domain with its vnodes; its backing with the host's pnode count
    assert got.json() == put.json()
    assert got.headers["etag"] == put.headers["etag"] == f'"{put.json()["version"]}"'
    assert got.headers["content-type"] == "application/json"
    assert sum(sum(v["backing_mib"]) for v in got.json()["vnodes"]) == 3072
    if client.app.state.engine.dialect.name == "postgresql":
        # lock the host; the domain; the host's other rows; every write as one statement
        assert n_put == 4


@pytest.mark.postgres
def test_put_target_statements_are_parsed_once(
    pg_client: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write batch (~100 parameters, ~5 KB) must hit psycopg's query cache: re-parsing it
    on every call was a fifth of a target change's CPU, under the host lock."""
    d = _domain(pg_client)
    for target in (2048, 2560, 3072):  # warm: every statement shape seen once
        assert pg_client.put(
            f"/v1/domains/{d['id']}/target", json={"target_mib": target}
        ).is_success
    parsed: list[bytes] = []
    uncached = psycopg_queries._query2pg_nocache

    def spy(query: bytes, encoding: str) -> Any:
        parsed.append(query)
        return uncached(query, encoding)

    monkeypatch.setattr(psycopg_queries, "_query2pg_nocache", spy)
    for target in (2048, 2560, 3072, 3584):
        r = pg_client.put(f"/v1/domains/{d['id']}/target", json={"target_mib": target})
        assert r.status_code == 200, r.text
    assert parsed == []
