"""Who may call which operation: the one table the service and the authorization tests read.

Operations are named by their OpenAPI operation id (the route's function name). Three kinds of
caller and five roles:

- public operations need no token (health, documentation, the /ui sign-in form);
- the agent API (`/v1/agent/hosts/{host_id}/...`) takes only that host's agent token, and the guest
  API (`/v1/guest/...`) only a guest token: these follow from the path, so a new agent or guest
  route can never be opened to a role by forgetting a line here;
- every other operation is a toolstack operation, allowed to the roles whose set below names it.
  An operation named nowhere is refused to everyone (fail closed), and
  tests/api/test_authz_matrix.py fails for it.
"""

from __future__ import annotations

from typing import Literal

from service.schemas.api_keys import ROLES, Role
from service.settings import Settings

__all__ = [
    "AGENT_PREFIX",
    "GUEST_PREFIX",
    "PUBLIC_OPERATIONS",
    "ROLES",
    "ROLE_OPERATIONS",
    "Access",
    "access_for",
    "role_allows",
]

Access = Literal["public", "agent", "guest", "toolstack"]

AGENT_PREFIX = "/v1/agent/"
DOCS = "/docs"  # Swagger UI and whatever assets it serves below it
GUEST_PREFIX = "/v1/guest/"

PUBLIC_OPERATIONS = frozenset(
    {
        "healthz",
        "readyz",
        "openapi",
        "custom_swagger_ui_html",
        "swagger_ui_redirect",
        "redoc_html",
        # The Swagger UI and ReDoc assets, served from the fastapi-offline package.
        "static-offline-docs",
        "ui_login_form",
        # Signing in checks the key sent in the form itself (and counts failures per address).
        "ui_login",
        "ui_logout",
    }
)

# Every GET of the toolstack API, the topology view and the metrics. Key management is not here:
# the list of keys says who holds access, which is the admin's business only.
READS = frozenset(
    {
        "list_hosts",
        "get_host",
        "get_host_by_name",
        "get_accounting",
        "list_domains",
        "get_domain",
        "get_domain_by_name",
        "get_placements",
        "export",
        "list_migrations",
        "get_migration",
        "get_cluster",
        "get_template",
        "list_events",
        "stream_events",
        "ui_topology",
        "ui_events",
        "metrics",
    }
)

MIGRATIONS = frozenset({"plan", "start", "advance", "abort"})

# Day-to-day operation of the hosts there are: their state, squeezes, rebalancing, evacuation
# and the domains' targets and labels.
OPERATE = frozenset(
    {
        "patch_host",
        "post_squeeze",
        "post_rebalance",
        "put_target",
        "evacuate",
        "patch_domain",
        "preview",
        "failover_plan",
    }
)
# An orchestrator's: create and delete domains (and label them), preview placements.
SCHEDULE = frozenset({"create_domain", "delete_domain", "patch_domain", "preview"})
# A host agent bootstrapping: it registers its host and then uses the agent token it gets.
ENROLL = frozenset({"create_host"})
# Only the admin: what removes hosts, re-issues tokens, changes the cluster, manages keys.
ADMINISTER = frozenset(
    {
        "delete_host",
        "rotate_agent_token",
        "rotate_guest_token",
        "put_cluster",
        "patch_cluster",
        "fail_host",
        "post_template",
        "create_api_key",
        "list_api_keys",
        "get_api_key",
        "revoke_api_key",
        "rotate_api_key",
    }
)

ROLE_OPERATIONS: dict[Role, frozenset[str]] = {
    "viewer": READS,
    "operator": READS | MIGRATIONS | OPERATE,  # no keys, no host registration or deletion
    "scheduler": READS | MIGRATIONS | SCHEDULE,
    "enroll": ENROLL,
    "admin": READS | MIGRATIONS | OPERATE | SCHEDULE | ENROLL | ADMINISTER,
}
assert set(ROLE_OPERATIONS) == set(ROLES)
assert all(ops <= ROLE_OPERATIONS["admin"] for ops in ROLE_OPERATIONS.values())


def access_for(operation: str | None, path_template: str, settings: Settings) -> Access:
    """Which kind of caller an operation takes. `/metrics` is public only when configured so."""
    docs = path_template == DOCS or path_template.startswith(DOCS + "/")
    if operation in PUBLIC_OPERATIONS or docs:
        return "public"
    if operation == "metrics" and settings.public_metrics:
        return "public"
    if path_template.startswith(AGENT_PREFIX):
        return "agent"
    if path_template.startswith(GUEST_PREFIX):
        return "guest"
    return "toolstack"


def role_allows(role: Role, operation: str) -> bool:
    return operation in ROLE_OPERATIONS[role]
