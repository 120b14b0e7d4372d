"""Every operation x every kind of caller -> the status the role table says.

The operations come from the app (the OpenAPI document and the plain routes), the expectations from
`service.api.authz` (the table the service itself checks): a route added without a decision fails
`test_every_operation_has_a_decision`, and the probe test then refuses it to everyone. Callers:
the bootstrap admin token, an API key of each role, the host agent of this host and of another,
two guests, and a revoked key, an expired key, an unknown token and no token at all.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import update

from service.api.authentication import route_table
from service.api.authz import PUBLIC_OPERATIONS, ROLE_OPERATIONS, ROLES, access_for
from service.app import create_app
from service.db.models import ApiKey
from service.settings import Settings
from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body
from tests.api.world import World, build_world

Request = tuple[str, str, dict[str, Any] | None]
Builder = Callable[[World, ApiClient], Request]
_n = itertools.count()


def _fresh_domain(c: ApiClient, w: World) -> str:
    body = domain_body(f"fresh-{next(_n)}", [1024], host_id=w.host_a)
    r = c.post("/v1/domains", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _fresh_migration(c: ApiClient, w: World) -> str:
    body = {"domain_id": _fresh_domain(c, w), "destination_host_id": w.host_b}
    r = c.post("/v1/migrations", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _fresh_host(c: ApiClient) -> str:
    r = c.post("/v1/hosts", json=host_body(f"fresh-{next(_n)}", n=1))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _fresh_key(c: ApiClient) -> str:
    r = c.post("/v1/api-keys", json={"name": f"fresh-{next(_n)}", "role": "viewer"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


# One request per operation; destructive ones act on something made for that request alone, so
# that every caller the table allows must get a success, not a 404 left by the one before.
REQUESTS: dict[str, Builder] = {
    "healthz": lambda w, c: ("GET", "/healthz", None),
    "readyz": lambda w, c: ("GET", "/readyz", None),
    "metrics": lambda w, c: ("GET", "/metrics", None),
    "openapi": lambda w, c: ("GET", "/openapi.json", None),
    "custom_swagger_ui_html": lambda w, c: ("GET", "/docs", None),
    "swagger_ui_redirect": lambda w, c: ("GET", "/docs/oauth2-redirect", None),
    "redoc_html": lambda w, c: ("GET", "/redoc", None),
    "static-offline-docs": lambda w, c: ("GET", "/static-offline-docs/swagger-ui.css", None),
    "ui_login_form": lambda w, c: ("GET", "/ui/login", None),
    "ui_login": lambda w, c: ("POST", "/ui/login", None),
    "ui_logout": lambda w, c: ("POST", "/ui/logout", None),
    "ui_topology": lambda w, c: ("GET", "/ui", None),
    "ui_events": lambda w, c: ("GET", "/ui/events?since=0&limit=1", None),
    "create_host": lambda w, c: ("POST", "/v1/hosts", host_body(f"new-{next(_n)}")),
    "list_hosts": lambda w, c: ("GET", "/v1/hosts", None),
    "get_host": lambda w, c: ("GET", f"/v1/hosts/{w.host_a}", None),
    "get_host_by_name": lambda w, c: ("GET", "/v1/hosts/by-name/host-a", None),
    "evacuate": lambda w, c: ("POST", f"/v1/hosts/{_fresh_host(c)}/evacuate", {}),
    "patch_host": lambda w, c: ("PATCH", f"/v1/hosts/{w.host_a}", {"state": "active"}),
    "delete_host": lambda w, c: ("DELETE", f"/v1/hosts/{_fresh_host(c)}", None),
    "get_accounting": lambda w, c: ("GET", f"/v1/hosts/{w.host_a}/accounting", None),
    "post_squeeze": lambda w, c: (
        "POST",
        f"/v1/hosts/{w.host_a}/squeeze",
        {"total_free_mib": 0, "dry_run": True},
    ),
    "post_rebalance": lambda w, c: (
        "POST",
        f"/v1/hosts/{w.host_a}/rebalance",
        {"budget_mib": 1024, "dry_run": True},
    ),
    "rotate_agent_token": lambda w, c: ("POST", f"/v1/hosts/{w.spare_host}/agent-token", None),
    "create_domain": lambda w, c: (
        "POST",
        "/v1/domains",
        domain_body(f"new-{next(_n)}", [1024], host_id=w.host_a),
    ),
    "list_domains": lambda w, c: ("GET", "/v1/domains", None),
    "get_domain": lambda w, c: ("GET", f"/v1/domains/{w.domain_x}", None),
    "get_domain_by_name": lambda w, c: ("GET", "/v1/domains/by-name/dom-x", None),
    "patch_domain": lambda w, c: ("PATCH", f"/v1/domains/{w.domain_x}", {"labels": {"k": "v"}}),
    "preview": lambda w, c: ("POST", "/v1/placements", {**domain_body("p", [1024]), "name": None}),
    "delete_domain": lambda w, c: ("DELETE", f"/v1/domains/{_fresh_domain(c, w)}", None),
    "put_target": lambda w, c: ("PUT", f"/v1/domains/{w.domain_x}/target", {"target_mib": 2048}),
    "rotate_guest_token": lambda w, c: (
        "POST",
        f"/v1/domains/{_fresh_domain(c, w)}/guest-token",
        None,
    ),
    "get_placements": lambda w, c: ("GET", f"/v1/domains/{w.domain_x}/placements", None),
    "export": lambda w, c: ("GET", f"/v1/domains/{w.domain_x}/export?format=xenstore", None),
    "get_cluster": lambda w, c: ("GET", "/v1/cluster", None),
    "put_cluster": lambda w, c: ("PUT", "/v1/cluster", {"block_mib": 128}),
    "patch_cluster": lambda w, c: ("PATCH", "/v1/cluster", {"block_mib": 128}),
    "failover_plan": lambda w, c: ("POST", "/v1/cluster/failover-plan", {"restarts": False}),
    "fail_host": lambda w, c: ("POST", f"/v1/hosts/{_fresh_host(c)}/fail", None),
    "post_template": lambda w, c: ("POST", "/v1/cluster/worst-case-template", None),
    "get_template": lambda w, c: ("GET", "/v1/cluster/worst-case-template", None),
    "list_events": lambda w, c: ("GET", "/v1/events", None),
    "stream_events": lambda w, c: ("GET", "/v1/events/stream?since=0&limit=1", None),
    "plan": lambda w, c: (
        "POST",
        "/v1/migrations/plan",
        {"domain_id": w.domain_x, "destination_host_id": w.host_b},
    ),
    "start": lambda w, c: (
        "POST",
        "/v1/migrations",
        {"domain_id": _fresh_domain(c, w), "destination_host_id": w.host_b},
    ),
    "list_migrations": lambda w, c: ("GET", "/v1/migrations", None),
    "get_migration": lambda w, c: ("GET", f"/v1/migrations/{w.migration}", None),
    "advance": lambda w, c: ("POST", f"/v1/migrations/{_fresh_migration(c, w)}/advance", None),
    "abort": lambda w, c: ("POST", f"/v1/migrations/{_fresh_migration(c, w)}/abort", None),
    "topology": lambda w, c: ("GET", "/v1/guest/topology", None),
    "balloon": lambda w, c: ("GET", "/v1/guest/balloon", None),
    "report": lambda w, c: (
        "PUT",
        "/v1/guest/balloon",
        {"vnodes": [{"index": 0, "actual_mib": 2048}]},
    ),
    "batch_report": lambda w, c: (
        "POST",
        f"/v1/agent/hosts/{w.host_a}/report",
        {"pnodes": [{"index": 0, "free_mib": 60000}], "domains": []},
    ),
    "observed": lambda w, c: (
        "PUT",
        f"/v1/agent/hosts/{w.host_a}/observed",
        {"pnodes": [{"index": 0, "free_mib": 60000}]},
    ),
    "steps": lambda w, c: ("GET", f"/v1/agent/hosts/{w.host_a}/steps", None),
    "ack": lambda w, c: (
        "POST",
        f"/v1/agent/hosts/{w.host_a}/steps/{w.step_a}/ack",
        {"ok": True},
    ),
    "create_api_key": lambda w, c: (
        "POST",
        "/v1/api-keys",
        {"name": f"new-{next(_n)}", "role": "viewer"},
    ),
    "list_api_keys": lambda w, c: ("GET", "/v1/api-keys", None),
    "get_api_key": lambda w, c: ("GET", f"/v1/api-keys/{w.key_ids['viewer']}", None),
    "revoke_api_key": lambda w, c: ("DELETE", f"/v1/api-keys/{_fresh_key(c)}", None),
    "rotate_api_key": lambda w, c: ("POST", f"/v1/api-keys/{_fresh_key(c)}/rotate", None),
}

KEYS = tuple(f"key_{role}" for role in ROLES)
CALLERS = (
    "none",
    "bad",
    "revoked",
    "expired",
    "admin",
    *KEYS,
    "agent_this",
    "agent_other",
    "guest_this",
    "guest_other",
)
SETTINGS = Settings(database_url="sqlite://")


def app_operations(app: FastAPI) -> dict[str, str]:
    """operation id -> path template, for every route the app serves: its OpenAPI operations
    and the plain routes (documentation) that are not in the document."""
    out = {
        op["operationId"]: path
        for path, item in app.openapi()["paths"].items()
        for op in item.values()
    }
    for op in route_table(app):
        out.setdefault(op.name, op.path_template)
    return out


def expected(operation: str, template: str, caller: str) -> int:
    """2 = a success (2xx, or the /ui sign-in's 303); else the exact status."""
    access = access_for(operation, template, SETTINGS)
    if operation == "ui_login":  # public, but it checks the key it is given like /ui does
        return expected("ui_topology", "/ui", caller)
    if access == "public":
        return 2
    if caller in ("none", "bad", "revoked", "expired"):
        return 401
    if access == "agent":
        return 2 if caller == "agent_this" else 403
    if access == "guest":  # each guest reads its own domain: the token is the id
        return 2 if caller in ("guest_this", "guest_other") else 403
    if caller == "admin":
        return 2 if operation in ROLE_OPERATIONS["admin"] else 403
    if caller in KEYS:
        return 2 if operation in ROLE_OPERATIONS[caller.removeprefix("key_")] else 403  # type: ignore[index]
    return 403


@pytest.fixture(scope="module")
def operations() -> dict[str, str]:
    app = create_app(SETTINGS)
    try:
        return app_operations(app)
    finally:
        app.state.engine.dispose()


def test_every_operation_has_a_decision(operations: dict[str, str]) -> None:
    undecided = sorted(
        op
        for op, template in operations.items()
        if access_for(op, template, SETTINGS) == "toolstack" and op not in ROLE_OPERATIONS["admin"]
    )
    assert not undecided, (
        f"operations no role may call (add them to service/api/authz.py): {undecided}"
    )
    named = PUBLIC_OPERATIONS | ROLE_OPERATIONS["admin"]
    stale = sorted(named - set(operations))
    assert not stale, f"the role table names operations the app does not have: {stale}"
    untested = sorted(set(operations) - set(REQUESTS))
    assert not untested, f"operations without a request in this test: {untested}"


def test_an_operation_without_a_decision_is_refused_to_everyone(db_url: str) -> None:
    """Fail closed: a route nobody put in the table is 403 even for the admin, not open."""
    from service.api.auth import Caller
    from tests.api.client import api_client
    from tests.conftest import ADMIN_TOKEN

    app = create_app(Settings(database_url=db_url, admin_token=ADMIN_TOKEN))

    @app.post("/v1/forgotten")
    def forgotten(_: Caller) -> dict[str, str]:
        return {"status": "open"}

    try:
        with api_client(app, ADMIN_TOKEN) as c:
            assert c.post("/v1/forgotten").status_code == 403
            assert c.post("/v1/forgotten", token=None, content=b'{"name":').status_code == 401
        assert "forgotten" not in ROLE_OPERATIONS["admin"]
    finally:
        app.state.engine.dispose()


def add_callers(client: ApiClient, world: World) -> None:
    """A key of every role, a revoked key and an expired one (expired in the database: the API
    refuses an expiry in the past)."""
    key_ids: dict[str, str] = {}
    for role in ROLES:
        r = client.post("/v1/api-keys", json={"name": f"role-{role}", "role": role})
        assert r.status_code == 201, r.text
        world.tokens[f"key_{role}"] = r.json()["secret"]
        key_ids[role] = r.json()["id"]
    for name in ("revoked", "expired"):
        r = client.post(
            "/v1/api-keys",
            json={
                "name": name,
                "role": "admin",
                "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            },
        )
        assert r.status_code == 201, r.text
        world.tokens[name] = r.json()["secret"]
        key_ids[name] = r.json()["id"]
    assert client.delete(f"/v1/api-keys/{key_ids['revoked']}").status_code == 204
    with client.app.state.sessionmaker() as s:
        s.execute(
            update(ApiKey)
            .where(ApiKey.id == key_ids["expired"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        s.commit()
    world.key_ids = key_ids


@pytest.mark.parametrize("operation", sorted(REQUESTS))
def test_operation_answers_each_caller_as_the_table_says(
    client: ApiClient, operations: dict[str, str], operation: str
) -> None:
    template = operations[operation]
    world = build_world(client)
    add_callers(client, world)
    seen = {}
    for caller in CALLERS:
        method, url, body = REQUESTS[operation](world, client)
        r = client.request(method, url, token=world.tokens[caller], json=body)
        want = expected(operation, template, caller)
        got = r.status_code
        seen[caller] = got
        ok = (200 <= got < 300 or got == 303) if want == 2 else got == want
        assert ok, f"{method} {url} as {caller}: {got}, expected {want}: {r.text[:300]}"
        if got in (401, 403) and not url.startswith("/ui"):
            assert r.headers["content-type"] == "application/problem+json"
    assert len(seen) == len(CALLERS)
