"""Every route x every kind of token -> the expected 2xx / 401 / 403.

The route list comes from the app itself: a route added later without an entry here fails
`test_every_route_has_an_expectation`, so nobody has to remember to extend the matrix.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from starlette.routing import Route

from service.app import create_app
from service.settings import Settings
from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body
from tests.api.world import World, build_world

Request = tuple[str, str, dict[str, Any] | None]
Builder = Callable[[World], Request]
_n = itertools.count()

ADMIN, AGENT, GUEST, PUBLIC = "admin", "agent", "guest", "public"

ROUTES: dict[tuple[str, str], tuple[str, Builder]] = {
    ("GET", "/healthz"): (PUBLIC, lambda w: ("GET", "/healthz", None)),
    ("GET", "/readyz"): (PUBLIC, lambda w: ("GET", "/readyz", None)),
    ("GET", "/metrics"): (PUBLIC, lambda w: ("GET", "/metrics", None)),
    ("GET", "/docs"): (PUBLIC, lambda w: ("GET", "/docs", None)),
    ("GET", "/docs/oauth2-redirect"): (PUBLIC, lambda w: ("GET", "/docs/oauth2-redirect", None)),
    ("GET", "/redoc"): (PUBLIC, lambda w: ("GET", "/redoc", None)),
    ("GET", "/openapi.json"): (PUBLIC, lambda w: ("GET", "/openapi.json", None)),
    # The topology view: the sign-in form is public; the page and signing in need the admin token.
    ("GET", "/ui/login"): (PUBLIC, lambda w: ("GET", "/ui/login", None)),
    ("POST", "/ui/login"): (ADMIN, lambda w: ("POST", "/ui/login", None)),
    ("GET", "/ui"): (ADMIN, lambda w: ("GET", "/ui", None)),
    ("POST", "/v1/hosts"): (ADMIN, lambda w: ("POST", "/v1/hosts", host_body(f"new-{next(_n)}"))),
    ("GET", "/v1/hosts"): (ADMIN, lambda w: ("GET", "/v1/hosts", None)),
    ("GET", "/v1/hosts/{host_id}"): (ADMIN, lambda w: ("GET", f"/v1/hosts/{w.host_a}", None)),
    ("PATCH", "/v1/hosts/{host_id}"): (
        ADMIN,
        lambda w: ("PATCH", f"/v1/hosts/{w.host_a}", {"state": "active"}),
    ),
    ("DELETE", "/v1/hosts/{host_id}"): (
        ADMIN,
        lambda w: ("DELETE", f"/v1/hosts/{w.spare_host}", None),
    ),
    ("GET", "/v1/hosts/{host_id}/accounting"): (
        ADMIN,
        lambda w: ("GET", f"/v1/hosts/{w.host_a}/accounting", None),
    ),
    ("POST", "/v1/hosts/{host_id}/squeeze"): (
        ADMIN,
        lambda w: ("POST", f"/v1/hosts/{w.host_a}/squeeze", {"total_free_mib": 0, "dry_run": True}),
    ),
    ("POST", "/v1/hosts/{host_id}/agent-token"): (
        ADMIN,
        lambda w: ("POST", f"/v1/hosts/{w.spare_host}/agent-token", None),
    ),
    ("POST", "/v1/domains"): (
        ADMIN,
        lambda w: ("POST", "/v1/domains", domain_body(f"new-{next(_n)}", [1024])),
    ),
    ("GET", "/v1/domains"): (ADMIN, lambda w: ("GET", "/v1/domains", None)),
    ("GET", "/v1/domains/{domain_id}"): (
        ADMIN,
        lambda w: ("GET", f"/v1/domains/{w.domain_x}", None),
    ),
    ("DELETE", "/v1/domains/{domain_id}"): (
        ADMIN,
        lambda w: ("DELETE", f"/v1/domains/{w.domain_x}", None),
    ),
    ("PUT", "/v1/domains/{domain_id}/target"): (
        ADMIN,
        lambda w: ("PUT", f"/v1/domains/{w.domain_x}/target", {"target_mib": 2048}),
    ),
    ("POST", "/v1/domains/{domain_id}/guest-token"): (
        ADMIN,
        lambda w: ("POST", f"/v1/domains/{w.domain_y}/guest-token", None),
    ),
    ("GET", "/v1/domains/{domain_id}/placements"): (
        ADMIN,
        lambda w: ("GET", f"/v1/domains/{w.domain_x}/placements", None),
    ),
    ("GET", "/v1/domains/{domain_id}/export"): (
        ADMIN,
        lambda w: ("GET", f"/v1/domains/{w.domain_x}/export?format=xenstore", None),
    ),
    ("GET", "/v1/cluster"): (ADMIN, lambda w: ("GET", "/v1/cluster", None)),
    ("PUT", "/v1/cluster"): (ADMIN, lambda w: ("PUT", "/v1/cluster", {"block_mib": 128})),
    ("POST", "/v1/cluster/worst-case-template"): (
        ADMIN,
        lambda w: ("POST", "/v1/cluster/worst-case-template", None),
    ),
    ("GET", "/v1/cluster/worst-case-template"): (
        ADMIN,
        lambda w: ("GET", "/v1/cluster/worst-case-template", None),
    ),
    ("GET", "/v1/events"): (ADMIN, lambda w: ("GET", "/v1/events", None)),
    ("POST", "/v1/hosts/{host_id}/rebalance"): (
        ADMIN,
        lambda w: (
            "POST",
            f"/v1/hosts/{w.host_a}/rebalance",
            {"budget_mib": 1024, "dry_run": True},
        ),
    ),
    ("POST", "/v1/migrations/plan"): (
        ADMIN,
        lambda w: (
            "POST",
            "/v1/migrations/plan",
            {"domain_id": w.domain_x, "destination_host_id": w.host_b},
        ),
    ),
    ("POST", "/v1/migrations"): (
        ADMIN,
        lambda w: (
            "POST",
            "/v1/migrations",
            {"domain_id": w.domain_x, "destination_host_id": w.host_b},
        ),
    ),
    ("GET", "/v1/migrations"): (ADMIN, lambda w: ("GET", "/v1/migrations", None)),
    ("GET", "/v1/migrations/{migration_id}"): (
        ADMIN,
        lambda w: ("GET", f"/v1/migrations/{w.migration}", None),
    ),
    ("POST", "/v1/migrations/{migration_id}/advance"): (
        ADMIN,
        lambda w: ("POST", f"/v1/migrations/{w.migration}/advance", None),
    ),
    ("POST", "/v1/migrations/{migration_id}/abort"): (
        ADMIN,
        lambda w: ("POST", f"/v1/migrations/{w.migration}/abort", None),
    ),
    ("GET", "/v1/guest/topology"): (GUEST, lambda w: ("GET", "/v1/guest/topology", None)),
    ("GET", "/v1/guest/balloon"): (GUEST, lambda w: ("GET", "/v1/guest/balloon", None)),
    ("PUT", "/v1/guest/balloon"): (
        GUEST,
        lambda w: ("PUT", "/v1/guest/balloon", {"vnodes": [{"index": 0, "actual_mib": 2048}]}),
    ),
    ("PUT", "/v1/agent/hosts/{host_id}/observed"): (
        AGENT,
        lambda w: (
            "PUT",
            f"/v1/agent/hosts/{w.host_a}/observed",
            {"pnodes": [{"index": 0, "free_mib": 60000}]},
        ),
    ),
    ("POST", "/v1/agent/hosts/{host_id}/report"): (
        AGENT,
        lambda w: (
            "POST",
            f"/v1/agent/hosts/{w.host_a}/report",
            {"pnodes": [{"index": 0, "free_mib": 60000}], "domains": []},
        ),
    ),
    ("GET", "/v1/agent/hosts/{host_id}/steps"): (
        AGENT,
        lambda w: ("GET", f"/v1/agent/hosts/{w.host_a}/steps", None),
    ),
    ("POST", "/v1/agent/hosts/{host_id}/steps/{step_id}/ack"): (
        AGENT,
        lambda w: ("POST", f"/v1/agent/hosts/{w.host_a}/steps/{w.step_a}/ack", {"ok": True}),
    ),
}

TOKENS = ("none", "bad", "admin", "agent_this", "agent_other", "guest_this", "guest_other")


def expected(kind: str, token: str) -> int:
    """2 = a 2xx; else the exact status."""
    if kind == PUBLIC:
        return 2
    if token in ("none", "bad"):
        return 401
    allowed = {
        ADMIN: {"admin"},
        AGENT: {"agent_this"},
        GUEST: {"guest_this", "guest_other"},  # each reads its own domain: the token is the id
    }[kind]
    return 2 if token in allowed else 403


def app_routes() -> set[tuple[str, str]]:
    """Every (method, path) the app serves: its API operations (the OpenAPI document is built
    from the route table, and no route here is hidden from it) plus the plain documentation
    routes mounted at the top."""
    app = create_app(Settings(database_url="sqlite://"))
    out = {
        (method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item
    }
    for route in app.routes:
        if isinstance(route, Route):
            out |= {(m, route.path) for m in route.methods or () if m != "HEAD"}
    app.state.engine.dispose()
    return out


def test_every_route_has_an_expectation() -> None:
    routes = app_routes()
    missing = routes - set(ROUTES)
    assert not missing, f"routes without an authorization expectation: {sorted(missing)}"
    stale = set(ROUTES) - routes
    assert not stale, f"expectations for routes that no longer exist: {sorted(stale)}"


@pytest.mark.parametrize("route", sorted(ROUTES), ids=lambda r: f"{r[0]} {r[1]}")
def test_route_answers_each_token_as_expected(client: ApiClient, route: tuple[str, str]) -> None:
    kind, build = ROUTES[route]
    world = build_world(client)
    # Tokens that should succeed go last, so a destructive success does not spoil the others.
    order = sorted(TOKENS, key=lambda t: expected(kind, t) == 2)
    seen = {}
    for token in order:
        method, url, body = build(world)
        r = client.request(method, url, token=world.tokens[token], json=body)
        want = expected(kind, token)
        got = r.status_code
        seen[token] = got
        ok = 200 <= got < 300 if want == 2 else got == want
        assert ok, f"{method} {url} with {token} token: {got}, expected {want}: {r.text[:300]}"
        if got in (401, 403):
            assert r.headers["content-type"] == "application/problem+json"
    assert len(seen) == len(TOKENS)
