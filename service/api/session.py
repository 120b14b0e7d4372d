"""The /ui session: a signed, short-lived cookie that names a key, never holds a secret.

The cookie carries `{"k": "key", "id": <key id>, "h": <16 hex of the key's secret digest>}` (or
`{"k": "admin", "h": ...}` for the bootstrap token), signed with itsdangerous and refused after
`ui_session_ttl_s`. Each request re-reads the key by id, so revoking, expiring or rotating it ends
its sessions on the next request, on every replica; a changed or removed admin token ends the
admin's. The signing secret is `NUMA_BALLOON_UI_SESSION_SECRET`, else derived from the admin
token, else random per process (sessions then last only as long as the process).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import Scope

from service.api.auth import ADMIN, Principal
from service.core.credentials import admin_binding, session_key
from service.settings import Settings

UI_PREFIX = "/ui"
COOKIE = "nb_ui_session"
_SALT = "numa-balloon-ui-session"


def make_signer(settings: Settings) -> URLSafeTimedSerializer:
    if settings.ui_session_secret is not None:
        secret = settings.ui_session_secret.get_secret_value().encode()
    elif settings.admin_token is not None:
        secret = hmac.new(
            settings.admin_token.get_secret_value().encode(), _SALT.encode(), hashlib.sha256
        ).digest()
    else:
        secret = secrets.token_bytes(32)
    return URLSafeTimedSerializer(secret, salt=_SALT)


def session_cookie(signer: URLSafeTimedSerializer, principal: Principal, binding: str) -> str:
    """The cookie value for a signed-in principal; `binding` ties it to the current secret."""
    if principal.kind == "admin":
        return signer.dumps({"k": "admin", "h": binding})
    return signer.dumps({"k": "key", "id": principal.subject_id, "h": binding})


def binding_for(principal: Principal, secret_hash: str | None, settings: Settings) -> str:
    if principal.kind == "admin":
        return admin_binding(settings) or ""
    return (secret_hash or "")[:16]


def wants_html(headers: Headers) -> bool:
    return "text/html" in headers.get("accept", "")


async def session_principal(scope: Scope, headers: Headers, settings: Settings) -> Principal | None:
    """The principal of a valid session cookie, or None (no cookie, bad, expired or stale)."""
    value = cookie_parser(headers.get("cookie", "")).get(COOKIE)
    if not value:
        return None
    app: Any = scope["app"]
    try:
        data = app.state.ui_signer.loads(value, max_age=settings.ui_session_ttl_s)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("h"), str):
        return None
    if data.get("k") == "admin":
        binding = admin_binding(settings)
        ok = binding is not None and hmac.compare_digest(binding, data["h"])
        return ADMIN if ok else None
    key_id = data.get("id")
    if data.get("k") != "key" or not isinstance(key_id, str):
        return None
    key = await run_in_threadpool(session_key, app.state.db, key_id, app.state.clock())
    if key is None or not hmac.compare_digest(key.secret_hash[:16], data["h"]):
        return None
    return Principal("key", key.id, key.name, key.role)
