"""`numa-balloon hosts ...`, `squeeze` and `rebalance`."""

from __future__ import annotations

import socket
from typing import Annotated, Any, Literal

import typer

from numa_balloon_cli import complete, describe, resolve
from numa_balloon_cli.files import load_body, parse_labels
from numa_balloon_cli.output import emit, labels, out, table, when
from numa_balloon_cli.state import State, state
from numa_balloon_cli.watching import Listing, follow
from numa_balloon_client import host_from_sysfs
from numa_balloon_client import models as m
from numa_balloon_client.sysfs import SYSFS_NODE_ROOT

app = typer.Typer(no_args_is_help=True)

HostArg = Annotated[
    str,
    typer.Argument(
        metavar="HOST", help="Host name, id or id prefix", autocompletion=complete.hosts
    ),
]
NameOpt = Annotated[str | None, typer.Option(metavar="NAME", help="Only the one of this name")]
LabelOpt = Annotated[
    list[str] | None, typer.Option("--label", metavar="KEY=VALUE", help="Only these (repeatable)")
]
WatchOpt = Annotated[
    bool, typer.Option("--watch", "-w", help="Then print each one again when it changes")
]
CountOpt = Annotated[
    int | None, typer.Option(min=1, metavar="N", help="With --watch: stop after N changes")
]
DryRunOpt = Annotated[bool, typer.Option(help="Compute only, change nothing")]

COLUMNS = ["NAME", "ID", "STATE", "PNODES", "CAPACITY MiB", "FREE MiB"]
WIDE = ["ALLOCATED MiB", "CLAIMED MiB", "DRIFT", "EVACUATING", "LABELS", "CREATED"]


def host_row(h: m.HostOut, wide: bool) -> list[Any]:
    row: list[Any] = [
        h.name,
        h.id,
        h.state,
        len(h.pnodes),
        h.memory.capacity_mib,
        h.memory.free_mib,
    ]
    if wide:
        evac = h.evacuation
        row += [
            h.memory.allocated_mib,
            h.memory.claimed_mib,
            "flagged" if h.drift_flagged else None,
            None if evac is None else f"{evac.domains_remaining} left",
            labels(h.labels),
            when(h.created_at),
        ]
    return row


@app.command("list")
def list_hosts(
    ctx: typer.Context,
    name: NameOpt = None,
    label: LabelOpt = None,
    watch: WatchOpt = False,
    count: CountOpt = None,
) -> None:
    """Every host: state, pnodes, capacity and free memory (-o wide: allocated, claimed, drift,
    evacuation, labels)."""
    st = state(ctx)

    def fetch() -> list[m.HostOut]:
        items = st.nb.iter_hosts(name=name, labels=parse_labels(label))
        return [h for h in items if name is None or h.name == name]

    columns = COLUMNS + WIDE if st.wide else COLUMNS
    if watch:
        follow(st, Listing(columns, fetch, lambda h: host_row(h, st.wide)), count)
        return
    items = fetch()
    emit(st.output, items, lambda: table(None, columns, [host_row(h, st.wide) for h in items]))


def show_host(h: m.HostOut) -> None:
    describe.host_fields(h)
    describe.pnodes(h, None)
    describe.slit(h.distances)


@app.command("get")
def get(ctx: typer.Context, host: HostArg) -> None:
    """One host with its pnodes and SLIT."""
    st = state(ctx)
    h = resolve.host(st.nb, host)
    emit(st.output, h, lambda: show_host(h))


@app.command("describe")
def describe_host(ctx: typer.Context, host: HostArg) -> None:
    """A host and what is on it: pnodes with their accounting, SLIT, its domains, migrations in
    flight to or from it, and its recent events."""
    st = state(ctx)
    h = resolve.host(st.nb, host)
    view = describe.HostView.read(st, h)
    emit(st.output, view.document(), view.show)


def _created(st: State, created: m.HostCreated) -> None:
    def human() -> None:
        out.print(f"host {created.name} registered: {created.id}")
        out.print(f"agent token (shown once): {created.agent_token}")

    emit(st.output, created, human)


@app.command("create")
def create(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Option("--file", "-f", metavar="PATH", help="Host body, JSON or YAML; - = stdin"),
    ],
    idempotency_key: Annotated[
        str | None, typer.Option(metavar="KEY", help="Reuse to make a retry safe")
    ] = None,
) -> None:
    """Register a host from a file (`{name, pnodes, distances}`)."""
    st = state(ctx)
    _created(st, st.nb.create_host(load_body(file), idempotency_key=idempotency_key))


@app.command("register")
def register(
    ctx: typer.Context,
    root: Annotated[str, typer.Argument(metavar="ROOT", help="The sysfs node directory")] = str(
        SYSFS_NODE_ROOT
    ),
    from_sysfs: Annotated[
        bool, typer.Option("--from-sysfs", help="Read the topology from sysfs (required)")
    ] = False,
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="Host name [default: hostname]")
    ] = None,
    reserved_mib: Annotated[
        int, typer.Option(min=0, metavar="MIB", help="Held back per pnode")
    ] = 0,
    dry_run: Annotated[bool, typer.Option(help="Print the body, register nothing")] = False,
) -> None:
    """Register this machine: its NUMA nodes, memory and SLIT from /sys/devices/system/node."""
    if not from_sysfs:
        raise typer.BadParameter("register needs --from-sysfs (the only source so far)")
    st = state(ctx)
    body = host_from_sysfs(root, name=name or socket.gethostname(), reserved_mib=reserved_mib)
    if dry_run:
        emit("json" if st.human else st.output, body, lambda: None)
        return
    _created(st, st.nb.create_host(body))


@app.command("set-state")
def set_state(
    ctx: typer.Context,
    host: HostArg,
    new_state: Annotated[
        Literal["active", "maintenance", "offline"],
        typer.Argument(metavar="STATE", help="active, maintenance or offline"),
    ],
) -> None:
    """Drain (maintenance), take offline, or reactivate a host; safe against a racing writer."""
    st = state(ctx)
    h = resolve.host(st.nb, host)  # the GET's ETag guards the PATCH (412 if it changed)
    after = st.nb.set_host_state(h.id, new_state, if_match=True)
    emit(st.output, after, lambda: out.print(f"host {after.name}: {h.state} -> {after.state}"))


@app.command("evacuate")
def evacuate(ctx: typer.Context, host: HostArg) -> None:
    """Start migrating every domain off a host; lists what could not be placed."""
    st = state(ctx)
    result = st.nb.evacuate(resolve.host_id(st.nb, host))

    def human() -> None:
        names = st.names
        names.domains([x.domain_id for x in result.migrations])
        names.domains([u.domain_id for u in result.unplaced])
        table(
            "migrations started",
            ["MIGRATION", "DOMAIN", "TO HOST", "STATE"],
            [
                (x.id, names.domain(x.domain_id), names.host(x.destination_host_id), x.state)
                for x in result.migrations
            ],
        )
        if result.unplaced:
            rows = [(names.domain(u.domain_id), u.reason) for u in result.unplaced]
            table("not placed", ["DOMAIN", "REASON"], rows)

    emit(st.output, result, human)


@app.command("fail")
def fail(
    ctx: typer.Context,
    host: HostArg,
    reason: Annotated[str | None, typer.Option(metavar="TEXT", help="Why, for the events")] = None,
) -> None:
    """Declare a host failed: its protected domains restart on the failover plan's hosts."""
    st = state(ctx)
    rec = st.nb.fail_host(resolve.host_id(st.nb, host), reason)

    def human() -> None:
        names = st.names
        names.domains([x.domain_id for x in rec.restarts])
        table(
            "restarts",
            ["DOMAIN", "ON HOST", "STATE"],
            [(names.domain(x.domain_id), names.host(x.host_id), x.state) for x in rec.restarts],
        )
        if rec.stranded:
            table(
                "stranded", ["DOMAIN", "REASON"], [(u.domain_name, u.reason) for u in rec.stranded]
            )

    emit(st.output, rec, human)


@app.command("accounting")
def accounting(ctx: typer.Context, host: HostArg) -> None:
    """Per pnode: capacity, allocated, claimed, free and what the agent last observed."""
    st = state(ctx)
    h = resolve.host(st.nb, host)
    acc = st.nb.host_accounting(h.id)

    def human() -> None:
        describe.pnodes(h, acc)
        describe.backing(st, acc)

    emit(st.output, acc, human)


@app.command("delete")
def delete(ctx: typer.Context, host: HostArg) -> None:
    """Remove a host (refused with 409 while domains or claims are on it)."""
    st = state(ctx)
    h = resolve.host(st.nb, host)
    st.nb.delete_host(h.id, if_match=True)
    emit(st.output, {"deleted": h.id}, lambda: out.print(f"host {h.name} deleted"))


def squeeze(
    ctx: typer.Context,
    host: HostArg,
    keep_free: Annotated[
        int | None,
        typer.Option(
            "--keep-free", min=1, metavar="MIB", help="Leave this many MiB free afterwards"
        ),
    ] = None,
    free_more: Annotated[
        int | None,
        typer.Option(
            "--free-more",
            min=1,
            metavar="MIB",
            help="Free this many MiB more than are free now (whole host)",
        ),
    ] = None,
    free: Annotated[
        int | None,
        typer.Option("--free", min=1, metavar="MIB", hidden=True, help="Deprecated: --keep-free"),
    ] = None,
    pnode: Annotated[
        int | None,
        typer.Option(metavar="N", help="With --keep-free: on this pnode (default: whole host)"),
    ] = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Free memory on a host by ballooning its domains down inside their ranges: leave
    --keep-free MiB free afterwards, or free --free-more MiB beyond what is free now."""
    st = state(ctx)
    keep = keep_free if keep_free is not None else free
    if (keep is None) == (free_more is None) or (keep_free is not None and free is not None):
        raise typer.BadParameter("give one of --keep-free MIB or --free-more MIB")
    if free_more is not None and pnode is not None:
        raise typer.BadParameter("--pnode goes with --keep-free (--free-more is host-wide)")
    body: dict[str, Any] = {"dry_run": dry_run}
    if free_more is not None:
        body["free_more_mib"] = free_more
    elif pnode is None:
        body["keep_total_free_mib"] = keep
    else:
        body["keep_free_mib"] = {str(pnode): keep}
    res = st.nb.squeeze(resolve.host_id(st.nb, host), body)

    def human() -> None:
        st.names.domains(d.domain_id for d in res.domains)
        rows = [
            (
                st.names.domain(d.domain_id),
                d.previous_target_mib,
                d.target_mib,
                " ".join(map(str, d.vnode_targets_mib)),
                "held (inactive or uncooperative)" if d.held else d.phase,
            )
            for d in res.domains
        ]
        table(
            "new targets" + (" (dry run)" if dry_run else ""),
            ["DOMAIN", "FROM MiB", "TARGET MiB", "VNODE TARGETS MiB", "NOTE"],
            rows,
        )
        out.print("free after, per pnode (MiB): " + " ".join(map(str, res.free_mib_after)))

    emit(st.output, res, human)


def rebalance(
    ctx: typer.Context,
    host: HostArg,
    budget_mib: Annotated[
        int, typer.Option(min=0, metavar="MIB", help="At most this many MiB move")
    ] = 4096,
    dry_run: DryRunOpt = False,
) -> None:
    """Move blocks between pools so memory sits where the virtual distances say (AutoNUMA)."""
    st = state(ctx)
    res = st.nb.rebalance(
        resolve.host_id(st.nb, host), {"budget_mib": budget_mib, "dry_run": dry_run}
    )

    def human() -> None:
        st.names.domains(mv.domain_id for mv in res.moves)
        rows = [
            (
                st.names.domain(mv.domain_id),
                f"{mv.from_vnode}@{mv.from_pnode}",
                f"{mv.to_vnode}@{mv.to_pnode}",
                mv.mib,
            )
            for mv in res.moves
        ]
        table("block moves (vnode@pnode)", ["DOMAIN", "FROM", "TO", "MiB"], rows)
        out.print(
            f"moved {res.moved_mib} MiB; distortion {res.distortion_before:.3f} -> "
            f"{res.distortion_after:.3f}"
        )

    emit(st.output, res, human)
