"""Liveness, readiness and metrics."""

from __future__ import annotations

from sqlalchemy import text

from service.db.migrations import head_revision
from tests.api.client import ApiClient
from tests.api.conftest import TWO_SOCKET


def test_healthz_and_readyz_need_no_token(client: ApiClient) -> None:
    assert client.get("/healthz", token=None).json() == {"status": "ok"}
    r = client.get("/readyz", token=None)
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_readyz_fails_when_the_database_is_behind(client: ApiClient) -> None:
    engine = client.app.state.engine
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    try:
        r = client.get("/readyz", token=None)
        assert r.status_code == 503 and "older" in r.json()["detail"]
        assert r.headers["retry-after"]
    finally:
        with engine.begin() as conn:
            # The real head: a hard-coded id left the database "behind" once a revision was
            # added, and every later test that waits for /readyz on it timed out.
            conn.execute(
                text("UPDATE alembic_version SET version_num = :head"), {"head": head_revision()}
            )


def test_metrics_count_requests_by_route_template(client: ApiClient) -> None:
    host = client.post("/v1/hosts", json=TWO_SOCKET).json()
    client.get(f"/v1/hosts/{host['id']}")
    client.get("/v1/hosts/00000000-0000-0000-0000-000000000000")
    text_ = client.get("/metrics", token=None).text
    assert (
        'numa_balloon_http_requests_total{method="GET",route="/v1/hosts/{host_id}",status="200"}'
        " 1.0" in text_
    )
    assert 'route="/v1/hosts/{host_id}",status="404"} 1.0' in text_
    assert "numa_balloon_http_request_duration_seconds_bucket" in text_
    assert host["id"] not in text_
