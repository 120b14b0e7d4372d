"""`numa-balloon hosts ...`, `squeeze` and `rebalance`."""

from __future__ import annotations

import socket
from typing import Annotated, Any, Literal

import typer

from numa_balloon_cli import resolve
from numa_balloon_cli.files import load_body, parse_labels
from numa_balloon_cli.output import emit, fields, out, table
from numa_balloon_cli.state import state
from numa_balloon_client import host_from_sysfs
from numa_balloon_client import models as m
from numa_balloon_client.sysfs import SYSFS_NODE_ROOT

app = typer.Typer(no_args_is_help=True)

HostArg = Annotated[str, typer.Argument(help="Host name or id")]
LabelOpt = Annotated[list[str] | None, typer.Option("--label", help="key=value (repeatable)")]


def _extra(model: Any, key: str) -> Any:
    """A field a newer server sends that the generated models do not name yet."""
    return (getattr(model, "model_extra", None) or {}).get(key)


def _capacity(h: m.HostOut) -> int:
    return sum(p.capacity_mib for p in h.pnodes)


@app.command("list")
def list_hosts(
    ctx: typer.Context, name: Annotated[str | None, typer.Option()] = None, label: LabelOpt = None
) -> None:
    """Every host: state, pnodes, capacity (and free memory where the server reports it)."""
    st = state(ctx)
    items = list(st.nb.iter_hosts(name=name, labels=parse_labels(label)))
    if name is not None:
        items = [h for h in items if h.name == name]
    rows = [
        (h.name, h.id, h.state, len(h.pnodes), _capacity(h), _extra(h, "free_mib")) for h in items
    ]
    emit(
        st.output,
        items,
        lambda: table(None, ["NAME", "ID", "STATE", "PNODES", "CAPACITY MiB", "FREE MiB"], rows),
    )


def show_host(h: m.HostOut) -> None:
    fields([("name", h.name), ("id", h.id), ("state", h.state), ("version", h.version)])
    rows = [(p.index, p.memory_mib, p.reserved_mib, p.capacity_mib, p.cpus) for p in h.pnodes]
    table("pnodes", ["PNODE", "MEMORY MiB", "RESERVED MiB", "CAPACITY MiB", "CPUS"], rows)
    slit = [(i, " ".join(f"{d:>3}" for d in row)) for i, row in enumerate(h.distances)]
    table("distances (SLIT)", ["PNODE", "ROW"], slit)


@app.command("get")
def get(ctx: typer.Context, host: HostArg) -> None:
    """One host with its pnodes and SLIT."""
    st = state(ctx)
    h = resolve.host(st.nb, host)
    emit(st.output, h, lambda: show_host(h))


def _created(st: Any, created: m.HostCreated) -> None:
    def human() -> None:
        out.print(f"host {created.name} registered: {created.id}")
        out.print(f"agent token (shown once): {created.agent_token}")

    emit(st.output, created, human)


@app.command("create")
def create(
    ctx: typer.Context,
    file: Annotated[str, typer.Option("--file", "-f", help="Host body, JSON or YAML; - = stdin")],
    idempotency_key: Annotated[str | None, typer.Option(help="Reuse to make a retry safe")] = None,
) -> None:
    """Register a host from a file (`{name, pnodes, distances}`)."""
    st = state(ctx)
    _created(st, st.nb.create_host(load_body(file), idempotency_key=idempotency_key))


@app.command("register")
def register(
    ctx: typer.Context,
    root: Annotated[str, typer.Argument(help="The sysfs node directory")] = str(SYSFS_NODE_ROOT),
    from_sysfs: Annotated[
        bool, typer.Option("--from-sysfs", help="Read the topology from sysfs (required)")
    ] = False,
    name: Annotated[str | None, typer.Option(help="Host name [default: hostname]")] = None,
    reserved_mib: Annotated[int, typer.Option(min=0, help="Held back per pnode")] = 0,
    dry_run: Annotated[bool, typer.Option(help="Print the body, register nothing")] = False,
) -> None:
    """Register this machine: its NUMA nodes, memory and SLIT from /sys/devices/system/node."""
    if not from_sysfs:
        raise typer.BadParameter("register needs --from-sysfs (the only source so far)")
    st = state(ctx)
    body = host_from_sysfs(root, name=name or socket.gethostname(), reserved_mib=reserved_mib)
    if dry_run:
        emit(st.output if st.output != "table" else "json", body, lambda: None)
        return
    _created(st, st.nb.create_host(body))


@app.command("set-state")
def set_state(
    ctx: typer.Context,
    host: HostArg,
    new_state: Annotated[Literal["active", "maintenance", "offline"], typer.Argument()],
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
        migs = result.get("migrations", [])
        table(
            "migrations started",
            ["MIGRATION", "DOMAIN", "TO HOST", "STATE"],
            [
                (x.get("id"), x.get("domain_id"), x.get("destination_host_id"), x.get("state"))
                for x in migs
            ],
        )
        unplaced = result.get("unplaced", [])
        if unplaced:
            table(
                "not placed",
                ["DOMAIN", "REASON"],
                [(u.get("domain_id"), u.get("reason")) for u in unplaced],
            )

    emit(st.output, result, human)


@app.command("accounting")
def accounting(ctx: typer.Context, host: HostArg) -> None:
    """Per pnode: capacity, allocated, claimed, free and what the agent last observed."""
    st = state(ctx)
    acc = st.nb.host_accounting(resolve.host_id(st.nb, host))

    def human() -> None:
        rows = [
            (
                p.index,
                p.capacity_mib,
                p.allocated_mib,
                p.claimed_mib,
                p.free_mib,
                p.observed_free_mib,
            )
            for p in acc.pnodes
        ]
        table(
            "pnodes",
            [
                "PNODE",
                "CAPACITY MiB",
                "ALLOCATED MiB",
                "CLAIMED MiB",
                "FREE MiB",
                "OBSERVED FREE MiB",
            ],
            rows,
        )
        drows = [
            (d.domain_id, " | ".join(" ".join(map(str, r)) for r in d.backing_mib))
            for d in acc.domains
        ]
        table("domains (backing MiB, vnode x pnode)", ["DOMAIN", "BACKING"], drows)

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
    free: Annotated[int, typer.Option("--free", min=1, help="MiB to free")],
    pnode: Annotated[int | None, typer.Option(help="Free it on this pnode (default: any)")] = None,
    dry_run: Annotated[bool, typer.Option(help="Compute only, change nothing")] = False,
) -> None:
    """Free memory on a host by ballooning its domains down inside their ranges."""
    st = state(ctx)
    body: dict[str, Any] = {"dry_run": dry_run}
    if pnode is None:
        body["total_free_mib"] = free
    else:
        body["free_mib"] = {str(pnode): free}
    res = st.nb.squeeze(resolve.host_id(st.nb, host), body)

    def human() -> None:
        rows = [
            (d.domain_id, d.target_mib, " ".join(map(str, d.vnode_targets_mib)))
            for d in res.domains
        ]
        table(
            "new targets" + (" (dry run)" if dry_run else ""),
            ["DOMAIN", "TARGET MiB", "VNODE TARGETS MiB"],
            rows,
        )
        out.print("free after, per pnode (MiB): " + " ".join(map(str, res.free_mib_after)))

    emit(st.output, res, human)


def rebalance(
    ctx: typer.Context,
    host: HostArg,
    budget_mib: Annotated[int, typer.Option(min=0, help="At most this many MiB move")] = 4096,
    dry_run: Annotated[bool, typer.Option(help="Compute only, change nothing")] = False,
) -> None:
    """Move blocks between pools so memory sits where the virtual distances say (AutoNUMA)."""
    st = state(ctx)
    res = st.nb.rebalance(
        resolve.host_id(st.nb, host), {"budget_mib": budget_mib, "dry_run": dry_run}
    )

    def human() -> None:
        rows = [
            (
                mv.domain_id,
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
