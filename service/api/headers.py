"""Security headers, set by path so the pages' own routes stay as they are.

Every response: `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, and HSTS when
the request came over TLS. The HTML pages (/ui, /docs, /redoc) also get a Content-Security-Policy
with `frame-ancestors 'none'` and no `'unsafe-inline'` for scripts:

- /ui's pages have no script (`script-src 'none'`), but for the topology view's one inline
  script, which that page's own policy allows by its hash (service/api/ui.py);
- the documentation pages are read as served: each inline script is allowed by its SHA-256 hash
  and each external script or stylesheet by its origin, so the policy follows whatever assets the
  docs route serves (from a CDN or, once they are local, from 'self') without a list to maintain.
  Styles keep 'unsafe-inline': Swagger UI and the topology view set style attributes.
"""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UI_CSP = (
    "default-src 'none'; script-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
DOC_PATHS = ("/docs", "/redoc")
_SCRIPT = re.compile(rb"<script\b([^>]*)>(.*?)</script>", re.DOTALL | re.IGNORECASE)
_SRC = re.compile(rb"""\bsrc\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_LINK = re.compile(rb"<link\b([^>]*)>", re.IGNORECASE)
_HREF = re.compile(rb"""\bhref\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
MAX_DOC_BYTES = 1 << 20


def _origin(url: bytes) -> str:
    parts = urlsplit(url.decode("ascii", "replace"))
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "'self'"


def docs_csp(html: bytes) -> str:
    """A policy that allows exactly the scripts and stylesheets this document uses."""
    scripts: set[str] = {"'self'"}
    for attrs, body in _SCRIPT.findall(html):
        src = _SRC.search(attrs)
        if src:
            scripts.add(_origin(src.group(1)))
        elif body.strip():
            sha = base64.b64encode(hashlib.sha256(body).digest()).decode()
            scripts.add(f"'sha256-{sha}'")
    styles: set[str] = {"'self'", "'unsafe-inline'"}
    images: set[str] = {"'self'", "data:"}
    fonts: set[str] = {"'self'", "data:"}
    for attrs in _LINK.findall(html):
        href = _HREF.search(attrs)
        if not href:
            continue
        origin = _origin(href.group(1))
        (styles if b"stylesheet" in attrs.lower() else images).add(origin)
        if "fonts.googleapis.com" in origin:
            styles.add(origin)
            fonts.add("https://fonts.gstatic.com")
    return (
        f"default-src 'self'; script-src {' '.join(sorted(scripts))}; "
        f"style-src {' '.join(sorted(styles))}; img-src {' '.join(sorted(images))}; "
        f"font-src {' '.join(sorted(fonts))}; connect-src 'self'; worker-src 'self' blob:; "
        "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        is_doc = path in DOC_PATHS or path.startswith("/docs/")
        tls = scope.get("scheme") == "https"
        if is_doc:
            await self._buffered(scope, receive, send, tls)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                _common(headers, tls)
                if (path == "/ui" or path.startswith("/ui/")) and (
                    "content-security-policy" not in headers
                ):
                    headers["Content-Security-Policy"] = UI_CSP  # the topology page sets its own
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _buffered(self, scope: Scope, receive: Receive, send: Send, tls: bool) -> None:
        """A docs page is small: hold it until its body is known, then hash its scripts. Other
        responses below /docs (assets) pass through with the common headers."""
        start: Message | None = None
        chunks: list[bytes] = []

        async def hold(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                _common(headers, tls)
                if headers.get("content-type", "").startswith("text/html"):
                    start = message
                    return
                await send(message)
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False) and sum(map(len, chunks)) < MAX_DOC_BYTES:
                return
            body = b"".join(chunks)
            chunks.clear()
            MutableHeaders(scope=start)["Content-Security-Policy"] = docs_csp(body)
            await send(start)
            start = None  # the rest, if any, passes through
            await send({**message, "body": body})

        await self.app(scope, receive, hold)


def _common(headers: MutableHeaders, tls: bool) -> None:
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    if tls:
        headers["Strict-Transport-Security"] = "max-age=31536000"
