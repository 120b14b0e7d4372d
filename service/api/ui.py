"""A read-only topology view at /ui: server-rendered HTML with inline SVG, no JavaScript.

For each host: its pnodes as stacked bars (memory of each domain, memory held above target,
claims, free), and its SLIT as a heat map; then the domains and the migrations in flight.
A browser signs in with an API key (`viewer` suffices) or the admin token; the service answers
with a signed session cookie that names the key (never its secret), HttpOnly, SameSite=Strict,
scoped to /ui and short-lived (service/api/session.py). API clients may send a bearer token.
The page is built from a fixed number of queries, whatever the size of the cluster.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from service.api.auth import Caller, Principal, is_admin, parse_bearer, resolve
from service.api.authz import role_allows
from service.api.deps import SessionDep
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
from service.db.models import ApiKey, Domain, Host, Migration
from service.db.overview import Overview, load_overview
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


def login_page(status: int, message: str | None = None) -> HTMLResponse:
    note = f'<p class="err">{escape(message)}</p>' if message else ""
    body = f"""<form method="post" action="/ui/login" class="login">
<h1>numa-balloon</h1><p>The topology view is read-only. Sign in with an API key (the
<code>viewer</code> role suffices) or the admin token.</p>{note}
<label>API key <input type="password" name="key" autocomplete="current-password"
autofocus required></label> <button type="submit">Sign in</button></form>"""
    return HTMLResponse(
        _page("Sign in", body), status_code=status, headers={"Cache-Control": "no-store"}
    )


@router.get("/login", response_class=HTMLResponse, summary="The topology view's sign-in form")
def ui_login_form() -> HTMLResponse:
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
        return Principal("admin", role="admin"), None
    return await run_in_threadpool(_resolve, request, token, request.app.state.clock())


def _resolve(request: Request, token: str, now: datetime) -> tuple[Principal, str | None]:
    with request.app.state.read_sessionmaker() as session:
        principal = resolve(session, token, now)
        secret_hash = None
        if principal.kind == "key":
            secret_hash = session.scalar(
                select(ApiKey.secret_hash).where(ApiKey.id == principal.subject_id)
            )
        return principal, secret_hash


@router.post(
    "/logout",
    status_code=303,
    response_class=RedirectResponse,
    summary="Sign out of the topology view (clears the session cookie)",
)
def ui_logout() -> Response:
    resp = RedirectResponse("/ui/login", status_code=303, headers={"Cache-Control": "no-store"})
    resp.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
    return resp


@router.get(
    "",
    response_class=HTMLResponse,
    responses=responses(401, 403),
    summary="Topology view: pnodes, memory by domain, SLIT heat maps, migrations (read-only)",
)
def ui_topology(session: SessionDep, principal: Caller) -> Response:
    view = load_overview(session, max_hosts=MAX_HOSTS, recent_migrations=RECENT_MIGRATIONS)
    return HTMLResponse(
        _page("Topology", _render(view, principal)), headers={"Cache-Control": "no-store"}
    )


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
.err{color:#a3261f}
.who{margin-left:auto;color:#cfd6e4} .out{margin:0} .out button{font-size:12px}
"""


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>numa-balloon · {escape(title)}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>"
    )


def _gib(mib: int) -> str:
    return f"{mib / 1024:.1f}".rstrip("0").rstrip(".") + " GiB"


def _bars(host: Host, view: Overview, colors: dict[str, str], names: dict[str, str]) -> str:
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
            segments.append(("#5b6170", held, "held above target (uncooperative)"))
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


def _heat(host: Host) -> str:
    """The SLIT as a heat map: 10 is pale, 32 (two socket hops) and beyond darkest."""
    d = host.distances
    n = len(d)
    cell = max(8, min(36, 150 // n))
    out = [
        f'<svg role="img" width="{n * cell + 2}" height="{n * cell + 2}" '
        f'aria-label="SLIT distances of {escape(host.name)}">'
    ]
    for i, row in enumerate(d):
        for j, v in enumerate(row):
            t = min(1.0, (v - 10) / (FAR - 10))  # one scale for every host
            light = 96 - 58 * t
            out.append(
                f'<rect x="{1 + j * cell}" y="{1 + i * cell}" width="{cell}" height="{cell}" '
                f'fill="hsl(8,70%,{light:.0f}%)" stroke="#fff" stroke-width="0.5">'
                f"<title>{i} → {j}: {v}</title></rect>"
            )
            if n <= 4:
                out.append(
                    f'<text x="{1 + j * cell + cell / 2}" y="{1 + i * cell + cell / 2 + 4}" '
                    f'font-size="11" text-anchor="middle">{v}</text>'
                )
    out.append("</svg>")
    return "".join(out)


def _signed_in(principal: Principal) -> str:
    who = "admin token" if principal.kind == "admin" else f"key {principal.name}"
    return (
        f'<span class="who">{escape(who)} · {escape(principal.role or principal.kind)}</span>'
        '<form method="post" action="/ui/logout" class="out"><button type="submit">'
        "Sign out</button></form>"
    )


def _header(view: Overview, principal: Principal) -> str:
    """The cluster's totals over the hosts shown, and who is signed in."""
    cap = sum(p.capacity_mib for h in view.hosts for p in h.pnodes)
    alloc = sum(p.allocated_mib for h in view.hosts for p in h.pnodes)
    claimed = sum(p.claimed_mib for h in view.hosts for p in h.pnodes)
    in_flight = sum(m.state in ACTIVE_MIGRATION_STATES for m in view.migrations)
    return (
        "<header><h1>numa-balloon</h1>"
        f"<span>{len(view.hosts)} hosts · {len(view.domains)} domains · {_gib(alloc)} allocated"
        f" · {_gib(claimed)} claimed · {_gib(cap - alloc - claimed)} free of {_gib(cap)}"
        f" · {in_flight} migration(s) in flight</span>"
        f'<a href="/docs">Swagger UI</a>{_signed_in(principal)}</header><main>'
    )


def _host_section(h: Host, view: Overview, colors: dict[str, str], names: dict[str, str]) -> str:
    """One host: its pnode bars and SLIT side by side, and a legend of its domains."""
    doms = [d for d in view.domains if d.host_id == h.id]
    legend = "".join(
        f'<span><i class="sw" style="background:{colors[d.id]}"></i>{escape(d.name)}</span>'
        for d in doms
    )
    hatch = (
        '<span><i class="sw" style="background:#5b6170"></i>held</span>'
        if any(d.uncooperative for d in doms)
        else ""
    )
    return (
        f"<section><h2>{escape(h.name)} <small>{len(h.pnodes)} pnode(s) · "
        f"{escape(h.state)}{' · drift!' if h.drift_flagged else ''}</small></h2>"
        '<div style="display:flex;gap:16px;align-items:flex-end">'
        f"<div>{_bars(h, view, colors, names)}</div>"
        f'<div><div style="font-size:11px;color:#667">SLIT</div>{_heat(h)}</div></div>'
        f'<div class="legend">{legend}{hatch}'
        '<span><i class="sw" style="background:repeating-linear-gradient(45deg,#777 0 2px,'
        '#fff 2px 4px)"></i>claimed</span><span><i class="sw" style="background:#e8ebf0">'
        "</i>free</span></div></section>"
    )


def _domain_row(d: Domain, colors: dict[str, str], host_names: dict[str, str]) -> str:
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


def _domains(view: Overview, colors: dict[str, str], host_names: dict[str, str]) -> str:
    rows = [_domain_row(d, colors, host_names) for d in view.domains]
    return (
        "<section><h2>Domains</h2><table><tr><th>name</th><th>host</th><th>vnodes</th>"
        "<th>target MiB</th><th>actual MiB</th><th>dynamic range</th><th>state</th></tr>"
        + "".join(rows)
        + "</table></section>"
    )


def _migration_row(
    m: Migration, view: Overview, names: dict[str, str], host_names: dict[str, str]
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


def _migrations(view: Overview, names: dict[str, str], host_names: dict[str, str]) -> str:
    mrows = [_migration_row(m, view, names, host_names) for m in view.migrations]
    return (
        "<section><h2>Migrations <small>in flight first, then the latest</small></h2>"
        "<table><tr><th>domain</th><th>from → to</th><th>strategy</th><th>phase</th>"
        "<th>steps acked</th><th>distortion</th><th>claims MiB</th></tr>"
        + ("".join(mrows) or '<tr><td colspan="7">none yet</td></tr>')
        + "</table></section></main>"
    )


def _render(view: Overview, principal: Principal) -> str:
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
