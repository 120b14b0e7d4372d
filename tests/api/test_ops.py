"""Liveness, readiness and metrics."""

from __future__ import annotations

from sqlalchemy import text

from tests.api.client import ApiClient
from tests.api.conftest import TWO_SOCKET


def test_healthz_and_readyz_need_no_token(client: ApiClient) -> None:
    assert client.get("/healthz", token=None).json() == {"status": "ok"}
    r = client.get("/readyz", token=None)
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_readyz_fails_when_the_database_is_behind(client: ApiClient) -> None:
    engine = client.app.state.engine
    with engine.begin() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    try:
        r = client.get("/readyz", token=None)
        assert r.status_code == 503 and "older" in r.json()["detail"]
        assert r.headers["retry-after"]
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})


def test_metrics_count_requests_by_route_template(client: ApiClient) -> None:
    host = client.post("/v1/hosts", json=TWO_SOCKET).json()
    client.get(f"/v1/hosts/{host['id']}")
    client.get("/v1/hosts/00000000-0000-0000-0000-000000000000")
    assert client.get("/metrics", token=None).status_code == 401  # not public unless configured
    text_ = client.get("/metrics").text
    assert (
        'numa_balloon_http_requests_total{actor="admin",method="GET",'
        'route="/v1/hosts/{host_id}",status="200"} 1.0' in text_
    )
    assert 'route="/v1/hosts/{host_id}",status="404"} 1.0' in text_
    assert "numa_balloon_http_request_duration_seconds_bucket" in text_
    assert host["id"] not in text_


def test_metrics_can_be_made_public(db_url: str) -> None:
    from service.app import create_app
    from service.settings import Settings
    from tests.api.client import api_client

    app = create_app(Settings(database_url=db_url, public_metrics=True))
    try:
        with api_client(app, None) as c:
            r = c.get("/metrics")
            assert r.status_code == 200 and "numa_balloon_http_requests_total" in r.text
    finally:
        app.state.engine.dispose()
