"""A read-only topology view at /ui: server-rendered HTML with inline SVG.

For each host: its pnodes as stacked bars (memory of each domain, memory held above target,
claims, free), and its SLIT as a heat map with its distances and a scale; then the domains and
the migrations in flight. The page keeps itself current: one small inline script (allowed by its
hash, nothing else runs) listens to the audit log's event stream (`/ui/events`, the same stream
as `/v1/events/stream`, authenticated by the session cookie) and fetches the page again when
something happened, at most every 2 s; without the stream it polls every 30 s, and without
JavaScript a `<noscript>` refresh does.
A browser signs in with an API key (`viewer` suffices) or the admin token; the service answers
with a signed session cookie that names the key (never its secret), HttpOnly, SameSite=Strict,
scoped to /ui and short-lived (service/api/session.py). API clients may send a bearer token.
The page is built from a fixed number of queries, whatever the size of the cluster.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from html import escape
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.datastructures import Headers
from starlette.requests import cookie_parser

from service.api.auth import ADMIN, Caller, Principal, is_admin, parse_bearer
from service.api.authz import role_allows
from service.api.deps import Now, run, run_operation
from service.api.events import MAX_SEQ, StreamWaiter, stream_events
from service.api.forwarded import client_address
from service.api.problems import (
    Forbidden,
    InvalidInput,
    TooManyRequests,
    Unauthorized,
    responses,
)
from service.api.ratelimit import Limits
from service.api.session import COOKIE, binding_for, session_cookie, wants_html
from service.core import credentials
from service.core.overview import DomainLine, HostCard, MigrationLine, Topology, topology
from service.errors import ServiceError
from service.settings import Settings
from service.vocabulary import ACTIVE_MIGRATION_STATES

router = APIRouter(prefix="/ui", tags=["ui"])

MAX_HOSTS = 64
MAX_FORM_FIELDS = 4  # the sign-in form has one (key); a few more are tolerated, not parsed
RECENT_MIGRATIONS = 8
FAR = 32
PALETTE = (
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
    "#b07aa1", "#ff9da7", "#9c755f", "#86bcb6", "#d37295", "#a0cbe8",
)  # fmt: skip


def login_page(status: int, message: str | None = None, *, error: bool = True) -> HTMLResponse:
    note = f'<p class="{"err" if error else "note"}">{escape(message)}</p>' if message else ""
    body = f"""<form method="post" action="/ui/login" class="login">
<h1>numa-balloon</h1><p>The topology view is read-only. Sign in with an API key (the
<code>viewer</code> role suffices) or the admin token.</p>{note}
<label>API key <input type="password" name="key" autocomplete="current-password"
autofocus required></label> <button type="submit">Sign in</button></form>"""
    return HTMLResponse(
        _page("Sign in", body), status_code=status, headers={"Cache-Control": "no-store"}
    )


def rejection_page(exc: ServiceError, headers: Headers) -> HTMLResponse:
    """The sign-in form a browser gets instead of the view: with no error on a first visit (no
    credential sent), a plain note when its session cookie ended, and the reason otherwise (a
    refused bearer token, a role that may not read, too many failures)."""
    sent_bearer = "authorization" in headers
    had_session = COOKIE in cookie_parser(headers.get("cookie", ""))
    if isinstance(exc, Unauthorized) and not sent_bearer:
        message = "Your session ended; sign in again." if had_session else None
        page = login_page(exc.status, message, error=False)
    else:
        page = login_page(exc.status, str(exc.detail))
    page.headers.update(exc.headers)
    return page


@router.get("/login", response_class=HTMLResponse, summary="The topology view's sign-in form")
async def ui_login_form() -> HTMLResponse:
    return login_page(200)


@router.post(
    "/login",
    response_class=RedirectResponse,
    status_code=303,
    responses=responses(401, 403, 413, 422, 429),
    summary="Sign in to the topology view with an API key (form field `key`, or bearer)",
)
async def ui_login(request: Request) -> Response:
    """Sets a signed session cookie naming the key (not its secret) and redirects to /ui."""
    try:
        principal, secret_hash = await _sign_in(request)
    except (Unauthorized, Forbidden, TooManyRequests, InvalidInput) as exc:
        if wants_html(request.headers):
            page = login_page(exc.status, str(exc.detail))
            page.headers.update(exc.headers)
            return page
        raise
    settings: Settings = request.app.state.settings
    resp = RedirectResponse("/ui", status_code=303, headers={"Cache-Control": "no-store"})
    resp.set_cookie(
        COOKIE,
        session_cookie(
            request.app.state.ui_signer, principal, binding_for(principal, secret_hash, settings)
        ),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/ui",
        max_age=settings.ui_session_ttl_s,
    )
    return resp


async def _sign_in(request: Request) -> tuple[Principal, str | None]:
    """The principal of the key in the form (or the bearer header). A sign-in that names no valid
    key counts as a failed authentication of the client's address; a valid key is never refused
    by that limit."""
    limits: Limits = request.app.state.limits
    try:
        token = await _offered_key(request)
        principal, secret_hash = await _verify(request, token)
    except (Unauthorized, InvalidInput) as exc:
        raise limits.failed_authentication(client_address(request.scope), exc) from None
    if principal.role is None or not role_allows(principal.role, "ui_topology"):
        raise Forbidden(f"a {principal.role or principal.kind} token cannot use the topology view")
    return principal, secret_hash


async def _offered_key(request: Request) -> str:
    """The key of the form (fields `key` or `token`), else of the bearer header.

    The body is at most `ANONYMOUS_MAX_BODY_BYTES` (service/api/middleware.py) and is parsed only
    when it holds at most `MAX_FORM_FIELDS` fields."""
    token = parse_bearer(request.headers.get("authorization"))
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        try:
            form = parse_qs(
                (await request.body()).decode("utf-8", "replace"), max_num_fields=MAX_FORM_FIELDS
            )
        except ValueError:
            raise InvalidInput(
                f"the sign-in form has more than {MAX_FORM_FIELDS} fields",
                errors=[{"loc": ["body"], "msg": f"at most {MAX_FORM_FIELDS} fields"}],
            ) from None
        token = ((form.get("key") or form.get("token") or [""])[0].strip()) or token
    if not token:
        raise Unauthorized("sign in with an API key")
    return token


async def _verify(request: Request, token: str) -> tuple[Principal, str | None]:
    if is_admin(request.app.state.settings, token):
        return ADMIN, None
    return await run_operation(request, credentials.sign_in, token, request.app.state.clock())


@router.post(
    "/logout",
    status_code=303,
    response_class=RedirectResponse,
    summary="Sign out of the topology view (clears the session cookie)",
)
async def ui_logout() -> Response:
    resp = RedirectResponse("/ui/login", status_code=303, headers={"Cache-Control": "no-store"})
    resp.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
    return resp


@router.get(
    "",
    response_class=HTMLResponse,
    responses=responses(401, 403),
    summary="Topology view: pnodes, memory by domain, SLIT heat maps, migrations (read-only)",
)
async def ui_topology(request: Request, principal: Caller, now: Now) -> Response:
    view = await run(request, topology, MAX_HOSTS, RECENT_MIGRATIONS, now)
    return HTMLResponse(
        _page("Topology", _render(view, principal), live=True),
        headers={"Cache-Control": "no-store", "Content-Security-Policy": PAGE_CSP},
    )


@router.get(
    "/events",
    response_class=EventSourceResponse,
    responses={
        **responses(401, 403, 422),
        200: {"description": "`text/event-stream`: one unnamed SSE event per audit event"},
    },
    summary="The topology view's cue to refresh: the audit log's event stream, from now on",
)
async def ui_events(
    request: Request,
    waiter: StreamWaiter,
    since: Annotated[
        int | None, Query(ge=0, le=MAX_SEQ, description="Start after this seq (default: now)")
    ] = None,
    limit: Annotated[
        int | None, Query(ge=1, le=10000, description="End after this many events")
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", max_length=20, pattern=r"^[0-9]{1,19}$"),
    ] = None,
) -> AsyncIterator[ServerSentEvent]:
    """`/v1/events/stream` under /ui, where the session cookie is sent, with unnamed events (the
    page listens for `message`): `data:` says which action, `id:` resumes after a reconnect."""
    stream = stream_events(
        request,
        waiter,
        since=since,
        subject_id=None,
        kind=None,
        actor=None,
        limit=limit,
        last_event_id=last_event_id,
    )
    async for sse in stream:
        yield ServerSentEvent(id=sse.id, data={"action": sse.event}, retry=2000)


# -- rendering -----------------------------------------------------------------------------

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:0;color:#1d2330;
background:#f4f5f7}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:24px;align-items:baseline}
header h1{font-size:18px;margin:0} header a{color:#a0cbe8}
main{padding:14px 20px;display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));
gap:14px}
section{background:#fff;border-radius:6px;padding:10px 14px;box-shadow:0 1px 2px #0002}
section.wide{grid-column:1/-1}
h2{font-size:15px;margin:0 0 6px} h2 small{color:#667;font-weight:normal}
table{border-collapse:collapse;width:100%} td,th{padding:3px 8px;text-align:left;
border-bottom:1px solid #eee;font-size:13px} th{color:#556}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px}
.tag{font-size:11px;padding:1px 6px;border-radius:8px;background:#eee}
.tag.bad{background:#fde2e1;color:#a3261f} .tag.run{background:#e3f1e6;color:#1f6b33}
.tag.fly{background:#fff1d6;color:#8a5a00}
.legend span{margin-right:14px;font-size:12px;color:#445}
.login{max-width:420px;margin:60px auto;background:#fff;padding:20px;border-radius:6px}
.err{color:#a3261f} .note{color:#445;font-size:12px;margin:6px 0 0}
.live{font-size:12px;color:#cfd6e4} .live.on::before{content:"\\25CF  ";color:#59a14f}
.who{margin-left:auto;color:#cfd6e4} .out{margin:0} .out button{font-size:12px}
"""


# Keeps the view current (see the module docstring): refetch /ui when the event stream says
# something happened, swapping the totals and the content; poll when there is no stream.
LIVE_JS = """(function () {
"use strict";
var POLL_S = 30, GAP_MS = 2000;
var live = document.getElementById("live");
var timer = null, last = 0, busy = false, polling = null, failures = 0;
function say(text, cls) { live.textContent = text; live.className = "live " + cls; }
function schedule() {
  if (timer === null) { timer = setTimeout(refresh, Math.max(0, GAP_MS - (Date.now() - last))); }
}
function swap(html) {
  var doc = new DOMParser().parseFromString(html, "text/html");
  ["totals", "content"].forEach(function (id) {
    var fresh = doc.getElementById(id), old = document.getElementById(id);
    if (fresh && old) { old.replaceWith(fresh); }
  });
  document.body.setAttribute("data-refreshed", String(Date.now()));
}
function refresh() {
  timer = null;
  if (document.hidden) {
    document.addEventListener("visibilitychange", schedule, {once: true});
    return;
  }
  if (busy) { schedule(); return; }
  busy = true;
  last = Date.now();
  fetch("/ui", {headers: {Accept: "text/html"}, credentials: "same-origin", cache: "no-store"})
    .then(function (r) {
      if (r.status === 401 || r.status === 403) { location.assign("/ui/login"); return null; }
      return r.ok ? r.text() : null;
    })
    .then(function (html) { if (html !== null) { swap(html); } })
    .catch(function () {})
    .then(function () { busy = false; });
}
function poll(why) {
  if (polling === null) { polling = setInterval(schedule, POLL_S * 1000); }
  say("refreshing every " + POLL_S + " s (" + why + ")", "poll");
}
if (!window.EventSource) { poll("no event stream in this browser"); return; }
var stream = new EventSource("/ui/events");
stream.onopen = function () { failures = 0; say("live", "on"); };
stream.onmessage = schedule;
stream.onerror = function () {
  failures += 1;
  if (stream.readyState === EventSource.CLOSED || failures > 5) {
    stream.close();
    poll("event stream unavailable");
  } else {
    say("reconnecting\u2026", "poll");
  }
};
})();"""
LIVE_SHA = base64.b64encode(hashlib.sha256(LIVE_JS.encode()).digest()).decode()
# The view's policy: its one script by hash, fetches and the stream to this origin only.
PAGE_CSP = (
    f"default-src 'none'; script-src 'sha256-{LIVE_SHA}'; connect-src 'self'; "
    "style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
POLL_S = 30  # the script's fallback, and the refresh without JavaScript


def _page(title: str, body: str, *, live: bool = False) -> str:
    refresh = f'<noscript><meta http-equiv="refresh" content="{POLL_S}"></noscript>' if live else ""
    script = f"<script>{LIVE_JS}</script>" if live else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>numa-balloon · {escape(title)}</title><style>{CSS}</style>{refresh}</head>"
        f"<body>{body}{script}</body></html>"
    )


def _gib(mib: int) -> str:
    return f"{mib / 1024:.1f}".rstrip("0").rstrip(".") + " GiB"


def _bars(host: HostCard, view: Topology, colors: dict[str, str], names: dict[str, str]) -> str:
    """One stacked bar per pnode: domains, held above target, claimed, free."""
    n = len(host.pnodes)
    top = max(p.capacity_mib for p in host.pnodes) or 1
    height, bar_w = 170, max(10, min(48, 340 // n - 6))
    gap = max(4, min(14, bar_w // 3))  # 16 pnodes fit in ~360 px
    width = 40 + n * (bar_w + gap)
    out = [
        f'<svg role="img" width="{width}" height="{height + 34}" '
        f'aria-label="memory per pnode of {escape(host.name)}">'
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#777" stroke-width="3"/></pattern></defs>'
        f'<text x="0" y="12" font-size="10" fill="#667">{_gib(top)}</text>'
    ]
    scale = (height - 16) / top
    for p in host.pnodes:
        x = 40 + p.index * (bar_w + gap)
        base = height
        cap_h = p.capacity_mib * scale
        out.append(
            f'<rect x="{x}" y="{base - cap_h:.1f}" width="{bar_w}" height="{cap_h:.1f}" '
            f'fill="#e8ebf0" stroke="#c5cad3"><title>pnode {p.index}: '
            f"{p.capacity_mib} MiB capacity, {p.capacity_mib - p.allocated_mib - p.claimed_mib}"
            " MiB free</title></rect>"
        )
        y = float(base)
        per_domain = view.backing.get((host.id, p.index), {})
        segments = [
            (colors.get(d, "#999"), mib, names.get(d, d[:8])) for d, mib in per_domain.items()
        ]
        held = p.allocated_mib - sum(per_domain.values())
        if held > 0:
            segments.append(("#5b6170", held, "held above target (not given back yet)"))
        if p.claimed_mib:
            segments.append(("url(#hatch)", p.claimed_mib, "claimed for a migration"))
        for fill, mib, label in segments:
            h = mib * scale
            y -= h
            out.append(
                f'<rect x="{x}" y="{y:.1f}" width="{bar_w}" height="{h:.1f}" fill="{fill}" '
                f'stroke="#fff" stroke-width="0.5"><title>{escape(label)}: {mib} MiB</title></rect>'
            )
        out.append(
            f'<text x="{x + bar_w / 2}" y="{height + 13}" font-size="10" text-anchor="middle">'
            f"{p.index}</text>"
        )
        free = p.capacity_mib - p.allocated_mib - p.claimed_mib
        if n <= 8:
            out.append(
                f'<text x="{x + bar_w / 2}" y="{height + 26}" font-size="9" fill="#667" '
                f'text-anchor="middle">{_gib(free)} free</text>'
            )
    out.append("</svg>")
    return "".join(out)


# The heat map's scale: one colour per SLIT distance, the same for every host.
SCALE = (10, 12, 16, 21, 32)


def _shade(v: int) -> tuple[str, str]:
    """The fill of distance `v` (10 pale, FAR and beyond darkest) and a legible text colour."""
    t = min(1.0, max(0.0, (v - 10) / (FAR - 10)))
    return f"hsl(8,70%,{96 - 58 * t:.0f}%)", "#fff" if t > 0.6 else "#1d2330"


def _heat(host: HostCard) -> str:
    """The SLIT as a heat map: every distance written in its cell, pnode indexes along both
    axes, and the scale below (10 = local, 32 = two socket hops, darkest beyond)."""
    d = host.distances
    n = len(d)
    cell = max(18, min(36, 288 // n))
    font = max(8, min(12, int(cell * 0.45)))
    edge = 14  # room for the axis labels
    size = edge + n * cell + 1
    width = max(size, edge + len(SCALE) * 26)  # the scale fits under a small map too
    out = [
        f'<svg role="img" width="{width}" height="{size + 34}" '
        f'aria-label="SLIT distances of {escape(host.name)}">'
    ]
    for i in range(n):
        middle = edge + i * cell + cell / 2
        out.append(
            f'<text x="{middle}" y="10" font-size="9" fill="#667" text-anchor="middle">{i}</text>'
            f'<text x="{edge - 3}" y="{middle + 3}" font-size="9" fill="#667" '
            f'text-anchor="end">{i}</text>'
        )
    for i, row in enumerate(d):
        for j, v in enumerate(row):
            fill, ink = _shade(v)
            x, y = edge + j * cell, edge + i * cell
            out.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" '
                f'stroke="#fff" stroke-width="0.5"><title>pnode {i} → pnode {j}: {v}</title></rect>'
                f'<text x="{x + cell / 2}" y="{y + cell / 2 + font * 0.35:.1f}" font-size="{font}" '
                f'fill="{ink}" text-anchor="middle">{v}</text>'
            )
    out.append(_scale(edge, size + 6))
    out.append("</svg>")
    return "".join(out)


def _scale(x0: int, y0: int) -> str:
    """The colour scale under a heat map: a swatch per distance, labelled."""
    out = []
    for k, v in enumerate(SCALE):
        fill, _ = _shade(v)
        x = x0 + k * 26
        label = f"{v}+" if v == SCALE[-1] else str(v)
        out.append(
            f'<rect x="{x}" y="{y0}" width="24" height="10" fill="{fill}" stroke="#c5cad3" '
            f'stroke-width="0.5"/><text x="{x + 12}" y="{y0 + 22}" font-size="9" fill="#667" '
            f'text-anchor="middle">{label}</text>'
        )
    return "".join(out)


def _signed_in(principal: Principal) -> str:
    who = "admin token" if principal.kind == "admin" else f"key {principal.name}"
    return (
        f'<span class="who">{escape(who)} · {escape(principal.role or principal.kind)}</span>'
        '<form method="post" action="/ui/logout" class="out"><button type="submit">'
        "Sign out</button></form>"
    )


def _header(view: Topology, principal: Principal) -> str:
    """The cluster's totals over the hosts shown, and who is signed in."""
    cap = sum(p.capacity_mib for h in view.hosts for p in h.pnodes)
    alloc = sum(p.allocated_mib for h in view.hosts for p in h.pnodes)
    claimed = sum(p.claimed_mib for h in view.hosts for p in h.pnodes)
    in_flight = sum(m.state in ACTIVE_MIGRATION_STATES for m in view.migrations)
    return (
        "<header><h1>numa-balloon</h1>"
        f'<span id="totals">{len(view.hosts)} hosts · {len(view.domains)} domains · '
        f"{_gib(alloc)} allocated · {_gib(claimed)} claimed · "
        f"{_gib(cap - alloc - claimed)} free of {_gib(cap)}"
        f" · {in_flight} migration(s) in flight · {_failover(view)}</span>"
        f'<span id="live" class="live poll">refreshing every {POLL_S} s</span>'
        f'<a href="/docs">Swagger UI</a>{_signed_in(principal)}</header><main id="content">'
    )


def _failover(view: Topology) -> str:
    """Failover protection: off, holds, or broken with the scenario's stranded count."""
    ha = view.ha
    if ha is None:
        return '<span id="failover" class="tag">failover protection off</span>'
    what = f"tolerates {ha.host_failures} host failure(s)"
    if ha.holds:
        return (
            f'<span id="failover" class="tag run">failover protection holds: {what}, '
            f"{ha.protected_domains} protected</span>"
        )
    return (
        f'<span id="failover" class="tag bad">failover protection BROKEN: {len(ha.stranded)} '
        f"domain(s) stranded if {len(ha.worst_failed_host_ids)} host(s) fail</span>"
    )


def _host_section(
    h: HostCard, view: Topology, colors: dict[str, str], names: dict[str, str]
) -> str:
    """One host: its pnode bars and SLIT side by side, and a legend of its domains."""
    doms = [d for d in view.domains if d.host_id == h.id]
    legend = "".join(
        f'<span><i class="sw" style="background:{colors[d.id]}"></i>{escape(d.name)}</span>'
        for d in doms
    )
    held = _held_mib(h, view)
    hatch = (
        '<span><i class="sw" style="background:#5b6170"></i>held above target</span>'
        if held
        else ""
    )
    why = (
        f'<p class="note">Held above target: {_gib(held)} that guests still hold although '
        "their targets are lower. Their balloon drivers have not given it back yet (still "
        "shrinking, or flagged uncooperative); it stays charged to the pnode until the guest "
        "reports it freed.</p>"
        if held
        else ""
    )
    return (
        f"<section><h2>{escape(h.name)} <small>{len(h.pnodes)} pnode(s) · "
        f"{escape(h.state)}{' · drift!' if h.drift_flagged else ''}</small></h2>"
        '<div style="display:flex;flex-wrap:wrap;gap:16px;align-items:flex-end">'
        f"<div>{_bars(h, view, colors, names)}</div>"
        '<div><div style="font-size:11px;color:#667">SLIT distances (10 = local), pnode &times; '
        f"pnode</div>{_heat(h)}</div></div>"
        f'<div class="legend">{legend}{hatch}'
        '<span><i class="sw" style="background:repeating-linear-gradient(45deg,#777 0 2px,'
        '#fff 2px 4px)"></i>claimed</span><span><i class="sw" style="background:#e8ebf0">'
        f"</i>free</span></div>{why}</section>"
    )


def _held_mib(h: HostCard, view: Topology) -> int:
    """Memory charged to the host's pnodes beyond its domains' backing: held above target."""
    return sum(
        max(0, p.allocated_mib - sum(view.backing.get((h.id, p.index), {}).values()))
        for p in h.pnodes
    )


def _domain_row(d: DomainLine, colors: dict[str, str], host_names: dict[str, str]) -> str:
    actual = [vn.actual_mib for vn in d.vnodes]
    act = "—" if any(a is None for a in actual) else str(sum(a or 0 for a in actual))
    tags = [f'<span class="tag {"run" if d.state == "running" else "fly"}">{d.state}</span>']
    if d.uncooperative:
        tags.append('<span class="tag bad">uncooperative</span>')
    return (
        f'<tr><td><i class="sw" style="background:{colors[d.id]}"></i>{escape(d.name)}</td>'
        f"<td>{escape(host_names.get(d.host_id or '', '—'))}</td><td>{len(d.vnodes)}</td>"
        f"<td>{d.target_mib}</td><td>{act}</td>"
        f"<td>{d.dynamic_min_mib}&ndash;{d.dynamic_max_mib}</td><td>{' '.join(tags)}</td></tr>"
    )


def _domains(view: Topology, colors: dict[str, str], host_names: dict[str, str]) -> str:
    rows = [_domain_row(d, colors, host_names) for d in view.domains]
    return (
        "<section><h2>Domains</h2><table><tr><th>name</th><th>host</th><th>vnodes</th>"
        "<th>target MiB</th><th>actual MiB</th><th>dynamic range</th><th>state</th></tr>"
        + "".join(rows)
        + "</table></section>"
    )


def _migration_row(
    m: MigrationLine, view: Topology, names: dict[str, str], host_names: dict[str, str]
) -> str:
    acked, total = view.steps.get(m.id, (0, 0))
    plan = m.plan or {}
    cls = (
        "fly"
        if m.state in ACTIVE_MIGRATION_STATES
        else ("run" if m.state == "completed" else "bad")
    )
    return (
        f"<tr><td>{escape(names.get(m.domain_id, m.domain_id[:8]))}</td>"
        f"<td>{escape(host_names.get(m.source_host_id or '', '—'))} → "
        f"{escape(host_names.get(m.destination_host_id or '', '—'))}</td>"
        f"<td>{escape(m.strategy)}</td><td><span class='tag {cls}'>{escape(m.state)}</span>"
        f"</td><td>{acked}/{total}</td>"
        f"<td>{plan.get('distortion_before', 0):g} → {plan.get('distortion_after', 0):g}</td>"
        f"<td>{sum(plan.get('claims_mib', []))}</td></tr>"
    )


def _migrations(view: Topology, names: dict[str, str], host_names: dict[str, str]) -> str:
    mrows = [_migration_row(m, view, names, host_names) for m in view.migrations]
    return (
        "<section><h2>Migrations <small>in flight first, then the latest</small></h2>"
        "<table><tr><th>domain</th><th>from → to</th><th>strategy</th><th>phase</th>"
        "<th>steps acked</th><th>distortion</th><th>claims MiB</th></tr>"
        + ("".join(mrows) or '<tr><td colspan="7">none yet</td></tr>')
        + "</table></section></main>"
    )


def _render(view: Topology, principal: Principal) -> str:
    colors = {d.id: PALETTE[i % len(PALETTE)] for i, d in enumerate(view.domains)}
    names = {d.id: d.name for d in view.domains}
    host_names = {h.id: h.name for h in view.hosts}
    return "".join(
        [
            _header(view, principal),
            *(_host_section(h, view, colors, names) for h in view.hosts),
            _domains(view, colors, host_names),
            _migrations(view, names, host_names),
        ]
    )
