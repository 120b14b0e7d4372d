"""`numa-balloon cluster show|template`, `events list|watch` and `top`."""

from __future__ import annotations

import functools
import time
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from numa_balloon_cli import resolve
from numa_balloon_cli.output import emit, emit_line, fields, out, table, when
from numa_balloon_cli.state import State, state
from numa_balloon_client import models as m

cluster_app = typer.Typer(no_args_is_help=True)
events_app = typer.Typer(no_args_is_help=True)


@cluster_app.command("show")
def show(ctx: typer.Context) -> None:
    """Cluster totals: hosts, domains, capacity, allocated, claimed and free MiB."""
    st = state(ctx)
    c = st.nb.get_cluster()
    emit(
        st.output,
        c,
        lambda: fields(
            [
                ("hosts", _hosts(c.hosts, c.hosts_by_state)),
                ("domains", c.domains),
                ("block MiB", c.block_mib),
                ("capacity MiB", c.capacity_mib),
                ("allocated MiB", c.allocated_mib),
                ("claimed MiB", c.claimed_mib),
                ("free MiB", c.free_mib),
                ("template", "set" if c.worst_case_template else "not derived yet"),
                ("failover", _protection(c.ha)),
            ]
        ),
    )


def _protection(ha: m.HaOut | None) -> str:
    """`off`, or `r=1 ha=true: holds` / `r=1: BROKEN (2 stranded)`."""
    if ha is None:
        return "off"
    what = f"r={ha.host_failures}" + (f" {ha.label_selector}" if ha.label_selector else "")
    if ha.holds:
        return f"{what}: holds ({ha.protected_domains} protected)"
    flag = ", overcommitted" if ha.overcommitted else ""
    return f"{what}: BROKEN ({len(ha.stranded)} stranded{flag})"


HostFailuresOpt = Annotated[
    int, typer.Option("-r", "--host-failures", metavar="N", help="Hosts failing at once")
]
SelectorOpt = Annotated[
    str | None,
    typer.Option("--selector", "-l", metavar="SELECTOR", help="Protected domains: key=value[,...]"),
]


@cluster_app.command("protect")
def protect(
    ctx: typer.Context,
    host_failures: HostFailuresOpt = 1,
    selector: SelectorOpt = None,
    off: Annotated[bool, typer.Option("--off", help="Turn protection off")] = False,
) -> None:
    """Protect the failover plan: changes that would break it are refused (409)."""
    st = state(ctx)
    ha = None if off else {"host_failures": host_failures, "label_selector": selector}
    c = st.nb.patch_cluster({"ha": ha})
    emit(st.output, c, lambda: out.print(f"failover: {_protection(c.ha)}"))


@cluster_app.command("failover-plan")
def failover_plan(
    ctx: typer.Context,
    host_failures: HostFailuresOpt = 1,
    selector: SelectorOpt = None,
    allow_spread: Annotated[
        bool, typer.Option(help="A restart may spread a vnode over several pnodes")
    ] = False,
) -> None:
    """Can every protected domain restart, with its vnodes, after any r host failures?

    Nothing changes. The table lists each host's failure (where its domains restart) and the
    worst scenario's stranded domains with the reason."""
    st = state(ctx)
    body: dict[str, Any] = {"host_failures": host_failures, "allow_spread": allow_spread}
    if selector is not None:
        body["label_selector"] = selector
    plan = st.nb.failover_plan(body)

    def human() -> None:
        mx = f"{plan.max_host_failures}" + ("" if plan.max_host_failures_exact else " (at least)")
        fields(
            [
                ("host failures", plan.host_failures),
                ("tolerated", "yes" if plan.tolerated else "NO"),
                ("max host failures", mx),
                ("exact", f"yes ({plan.method})" if plan.exact else f"no ({plan.method})"),
                ("scenarios", plan.scenarios),
                ("protected domains", plan.protected_domains),
                ("duration ms", f"{plan.duration_ms:.1f}"),
            ]
        )
        per_host: dict[str, list[m.RestartOut]] = {}
        for r in plan.restarts:
            per_host.setdefault(r.failed_host_id, []).append(r)
        rows = [
            (
                st.names.host(h) or h,
                len(rs),
                ", ".join(sorted({st.names.host(r.host_id) or r.host_id for r in rs})),
            )
            for h, rs in per_host.items()
        ]
        if rows:
            table("if one host fails", ["FAILED HOST", "RESTARTS", "ON"], rows)
        w = plan.worst
        if w is not None:
            failed = ", ".join(st.names.host(h) or h for h in w.failed_host_ids)
            table(
                "worst scenario",
                ["FAILED HOSTS", "FREE AFTER MiB", "SQUEEZE MiB", "STRANDED"],
                [(failed, w.free_after_mib, w.squeeze_mib, len(w.unplaced))],
            )
            if w.unplaced:
                table(
                    "stranded domains",
                    ["DOMAIN", "REASON"],
                    [(u.domain_name, u.reason) for u in w.unplaced],
                )
        if plan.note:
            out.print(Text(plan.note))

    emit(st.output, plan, human)


def _hosts(total: int, by_state: dict[str, int]) -> str:
    """`3 (2 active, 1 maintenance)`."""
    parts = ", ".join(f"{n} {s}" for s, n in sorted(by_state.items()) if n)
    return f"{total} ({parts})" if parts else str(total)


@cluster_app.command("template")
def template(
    ctx: typer.Context,
    derive: Annotated[bool, typer.Option(help="Derive it again from the hosts")] = False,
) -> None:
    """The cluster's worst-case virtual topology (one for every guest, wherever it runs)."""
    st = state(ctx)
    t = st.nb.derive_template() if derive else st.nb.get_template()

    def human() -> None:
        rows = [(i, " ".join(f"{d:>3}" for d in v.distances)) for i, v in enumerate(t.vnodes)]
        table(f"worst-case template: {len(t.vnodes)} vnodes", ["VNODE", "DISTANCES"], rows)

    emit(st.output, t, human)


def subject_of(st: State, e: m.EventOut) -> str:
    """`host compute-07`, `domain web`, `cluster`: the name the event carries, else the one the
    service knows now, else the id."""
    if e.subject_id is None:
        return e.subject_type
    carried = (e.after or {}).get("name") or (e.before or {}).get("name")
    name: str | None = carried if isinstance(carried, str) else None
    if name is None and e.subject_type == "host":
        name = st.names.host(e.subject_id)
    elif name is None and e.subject_type == "domain":
        name = st.names.domain(e.subject_id)
    return f"{e.subject_type} {name or e.subject_id}"


def _event_line(st: State, e: m.EventOut) -> None:
    out.print(f"{e.seq:>6} {when(e.at)} {e.actor:<16} {e.action:<28} {subject_of(st, e)}")


SubjectOpt = Annotated[
    str | None,
    typer.Option(
        metavar="SUBJECT", help="Only about this host or domain (name or id), or migration"
    ),
]
KindOpt = Annotated[
    str | None,
    typer.Option(metavar="KIND", help="An action (migration.advanced) or a type (migration)"),
]
ActorOpt = Annotated[str | None, typer.Option(metavar="ACTOR", help="e.g. admin, key:<name>")]


def _subject(st: State, ref: str | None) -> str | None:
    return None if ref is None else resolve.subject_id(st.nb, ref)


@events_app.command("list")
def list_events(
    ctx: typer.Context,
    since: Annotated[int, typer.Option(min=0, metavar="SEQ", help="After this seq")] = 0,
    subject: SubjectOpt = None,
    kind: KindOpt = None,
    actor: ActorOpt = None,
    limit: Annotated[int | None, typer.Option(min=1, metavar="N", help="At most N events")] = None,
) -> None:
    """The audit log: who changed what, oldest first."""
    st = state(ctx)
    items: list[m.EventOut] = []
    for e in st.nb.iter_events(
        since=since, subject_id=_subject(st, subject), kind=kind, actor=actor
    ):
        items.append(e)
        if limit is not None and len(items) >= limit:
            break
    emit(
        st.output,
        items,
        lambda: table(
            None,
            ["SEQ", "AT", "ACTOR", "ACTION", "SUBJECT", "ID"],
            [
                (e.seq, when(e.at), e.actor, e.action, subject_of(st, e), e.subject_id)
                for e in items
            ],
        ),
    )


@events_app.command("watch")
def watch(
    ctx: typer.Context,
    since: Annotated[
        int | None,
        typer.Option(min=0, metavar="SEQ", help="After this seq (0: the whole log first)"),
    ] = None,
    subject: SubjectOpt = None,
    kind: KindOpt = None,
    actor: ActorOpt = None,
    count: Annotated[int | None, typer.Option(min=1, metavar="N", help="Stop after N events")] = (
        None
    ),
    stream: Annotated[bool, typer.Option(help="Use the SSE stream instead of the long-poll")] = (
        False
    ),
) -> None:
    """Follow the audit log from now on, as it grows (--since SEQ: from there; one JSON
    document per line with -o json)."""
    st = state(ctx)
    subject_id = _subject(st, subject)
    if stream:  # the stream itself starts from now when no seq is given
        events = st.nb.stream_events(
            last_event_id=since, subject_id=subject_id, kind=kind, actor=actor
        )
    else:
        start = st.nb.latest_event_seq() if since is None else since
        events = st.nb.watch(since=start, subject_id=subject_id, kind=kind, actor=actor)
    try:
        for seen, event in enumerate(events, start=1):
            emit_line(st.output, event, functools.partial(_event_line, st, event))
            if count is not None and seen >= count:
                return
    except KeyboardInterrupt:
        return


# --- top ----------------------------------------------------------------------------------------


def snapshot(st: State) -> list[dict[str, Any]]:
    """Every host with its per-pnode accounting (one read each)."""
    hosts = []
    for h in st.nb.iter_hosts():
        acc = st.nb.host_accounting(h.id)
        hosts.append({"host": h, "domains": len(acc.domains), "pnodes": acc.pnodes})
    return hosts


def _bar(used: int, claimed: int, capacity: int, width: int = 24) -> Text:
    if capacity <= 0:
        return Text("")
    a = round(width * used / capacity)
    c = min(width - a, round(width * claimed / capacity))
    bar = Text("█" * a, style="green")
    bar.append("▒" * c, style="yellow")
    bar.append("·" * (width - a - c), style="dim")
    return bar


def render(hosts: list[dict[str, Any]]) -> Group:
    """One table per host: a row per pnode with a bar (allocated, claimed, free)."""
    tables = []
    for entry in hosts:
        h: m.HostOut = entry["host"]
        t = Table(
            title=Text(f"{h.name}  [{h.state}]  {entry['domains']} domains", style="bold"),
            title_justify="left",
            show_edge=False,
            pad_edge=False,
        )
        for col in ("PNODE", "CAPACITY MiB", "ALLOCATED MiB", "CLAIMED MiB", "FREE MiB"):
            t.add_column(col, justify="right")
        t.add_column("USE")
        for p in entry["pnodes"]:
            t.add_row(
                str(p.index),
                str(p.capacity_mib),
                str(p.allocated_mib),
                str(p.claimed_mib),
                str(p.free_mib),
                _bar(p.allocated_mib, p.claimed_mib, p.capacity_mib),
            )
        tables.append(t)
    return Group(*tables) if tables else Group(Text("no hosts registered"))


def _json_snapshot(hosts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "host_id": e["host"].id,
            "name": e["host"].name,
            "state": e["host"].state,
            "domains": e["domains"],
            "pnodes": e["pnodes"],
        }
        for e in hosts
    ]


def top(
    ctx: typer.Context,
    interval: Annotated[
        float, typer.Option(min=0.2, metavar="SECONDS", help="Seconds between refreshes")
    ] = 2.0,
    once: Annotated[bool, typer.Option(help="Draw one frame and exit")] = False,
    count: Annotated[int | None, typer.Option(min=1, metavar="N", help="Stop after N frames")] = (
        None
    ),
) -> None:
    """A live per-host, per-pnode view of the cluster's memory (Ctrl-C to leave)."""
    st = state(ctx)
    frames = 1 if once else count
    if not st.human:
        for i in range(frames or 1_000_000_000):
            emit_line(st.output, _json_snapshot(snapshot(st)), lambda: None)
            if frames is not None and i + 1 >= frames:
                return
            time.sleep(interval)
        return
    if once:
        out.print(render(snapshot(st)))
        return
    drawn = 0
    with Live(render(snapshot(st)), console=out, auto_refresh=False, screen=False) as live:
        try:
            while frames is None or drawn + 1 < frames:
                time.sleep(interval)
                live.update(render(snapshot(st)), refresh=True)
                drawn += 1
        except KeyboardInterrupt:
            pass
