"""`numa-balloon domains ...`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from numa_balloon_cli import resolve
from numa_balloon_cli.files import load_body, parse_labels
from numa_balloon_cli.output import emit, fields, out, table
from numa_balloon_cli.state import state
from numa_balloon_client import models as m

app = typer.Typer(no_args_is_help=True)

DomainArg = Annotated[str, typer.Argument(help="Domain name or id")]


@app.command("list")
def list_domains(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Only on this host (name or id)")] = None,
    name: Annotated[str | None, typer.Option()] = None,
    label: Annotated[list[str] | None, typer.Option("--label", help="key=value")] = None,
) -> None:
    """Every domain: host, state, target and size."""
    st = state(ctx)
    host_id = resolve.host_id(st.nb, host) if host else None
    items = list(st.nb.iter_domains(host_id=host_id, name=name, labels=parse_labels(label)))
    if name is not None:
        items = [d for d in items if d.name == name]
    names = resolve.host_names(st.nb) if st.output == "table" else {}
    rows = [
        (
            d.name,
            d.id,
            names.get(d.host_id or "", d.host_id),
            d.state,
            d.memory.target_mib,
            d.memory.static_max_mib,
            len(d.vnodes),
        )
        for d in items
    ]
    emit(
        st.output,
        items,
        lambda: table(
            None, ["NAME", "ID", "HOST", "STATE", "TARGET MiB", "MAX MiB", "VNODES"], rows
        ),
    )


def show_domain(d: m.DomainOut) -> None:
    mem = d.memory
    fields(
        [
            ("name", d.name),
            ("id", d.id),
            ("host", d.host_id),
            ("state", d.state),
            ("policy", d.policy),
            ("version", d.version),
            (
                "memory MiB",
                f"target {mem.target_mib}, dynamic {mem.dynamic_min_mib}.."
                f"{mem.dynamic_max_mib}, static max {mem.static_max_mib}",
            ),
        ]
    )
    rows = [
        (
            v.index,
            v.size_mib,
            v.target_mib,
            v.home_pnode,
            " ".join(map(str, v.backing_mib)),
            v.plugged_blocks,
            ",".join(map(str, v.vcpus)),
        )
        for v in d.vnodes
    ]
    table(
        "vnodes",
        ["VNODE", "SIZE MiB", "TARGET MiB", "HOME", "BACKING MiB / PNODE", "PLUGGED", "VCPUS"],
        rows,
    )


@app.command("get")
def get(ctx: typer.Context, domain: DomainArg) -> None:
    """One domain with its vnodes, targets and backing."""
    st = state(ctx)
    d = resolve.domain(st.nb, domain)
    emit(st.output, d, lambda: show_domain(d))


@app.command("create")
def create(
    ctx: typer.Context,
    file: Annotated[str, typer.Option("--file", "-f", help="Domain body, JSON or YAML; - stdin")],
    host: Annotated[str | None, typer.Option(help="Place it on this host (name or id)")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Reuse to make a retry safe")] = None,
) -> None:
    """Create a domain from a file; without a host the service picks the best one."""
    st = state(ctx)
    body = load_body(file)
    if host is not None:
        body["host_id"] = resolve.host_id(st.nb, host)
    d = st.nb.create_domain(body, idempotency_key=idempotency_key)

    def human() -> None:
        out.print(f"domain {d.name} created on host {d.host_id}: {d.id}")
        out.print(f"guest token (shown once): {d.guest_token}")

    emit(st.output, d, human)


@app.command("set-target")
def set_target(
    ctx: typer.Context,
    domain: DomainArg,
    target_mib: Annotated[int, typer.Argument(min=0, help="New balloon target, MiB")],
    policy: Annotated[
        Literal["proportional", "round-robin", "nearest", "faithful"] | None, typer.Option()
    ] = None,
) -> None:
    """Balloon a domain to a new target (409 with the largest feasible one when it cannot)."""
    st = state(ctx)
    before = resolve.domain(st.nb, domain)
    body: dict[str, object] = {"target_mib": target_mib}
    if policy is not None:
        body["policy"] = policy
    d = st.nb.set_target(before.id, body, if_match=True)
    emit(
        st.output,
        d,
        lambda: out.print(
            f"domain {d.name}: target {before.memory.target_mib} -> {d.memory.target_mib} MiB; "
            "per vnode " + " ".join(str(v.target_mib) for v in d.vnodes)
        ),
    )


@app.command("placements")
def placements(
    ctx: typer.Context,
    domain: Annotated[str | None, typer.Argument(help="Rank hosts for this domain")] = None,
    file: Annotated[
        str | None, typer.Option("--file", "-f", help="Or a domain body: nothing is created")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="With --file: at most N hosts")] = None,
) -> None:
    """Hosts ranked for a domain (or for a domain body, with --file)."""
    st = state(ctx)
    if (domain is None) == (file is None):
        raise typer.BadParameter("give a DOMAIN or --file, one of the two")
    names = resolve.host_names(st.nb) if st.output == "table" else {}
    if domain is not None:
        ranked = st.nb.domain_placements(resolve.domain_id(st.nb, domain))
        data: object = ranked
        items = [p.model_dump() for p in ranked.hosts]
    else:
        data = st.nb.place(load_body(file or "-"), limit=limit)
        raw = data.get("hosts", data.get("items", [])) if isinstance(data, dict) else data
        items = list(raw) if isinstance(raw, list) else []
    rows = [_placement_row(p, names) for p in items]
    columns = ["HOST", "FEASIBLE", "SCORE", "DISTORTION", "MAPPING", "REASON"]
    emit(st.output, data, lambda: table(None, columns, rows))


def _placement_row(p: dict[str, Any], names: dict[str, str]) -> tuple[object, ...]:
    host = p.get("host_name") or names.get(p.get("host_id", ""), p.get("host_id"))
    mapping = " ".join(map(str, p.get("mapping") or []))
    return (
        host,
        p.get("feasible"),
        _num(p.get("score")),
        _num(p.get("distortion")),
        mapping,
        p.get("reason"),
    )


def _num(value: object) -> object:
    return f"{value:.3f}" if isinstance(value, float) else value


@app.command("export")
def export(
    ctx: typer.Context,
    domain: DomainArg,
    fmt: Annotated[Literal["xl", "libvirt", "xenstore"], typer.Option("--format")] = "xl",
) -> None:
    """The domain's vNUMA as an xl.cfg block, libvirt XML or xenstore keys (as text)."""
    st = state(ctx)
    text = st.nb.export_domain(resolve.domain_id(st.nb, domain), fmt)
    emit(st.output, {"format": fmt, "text": text}, lambda: print(text, end=""))


@app.command("delete")
def delete(ctx: typer.Context, domain: DomainArg) -> None:
    """Remove a domain and free its memory."""
    st = state(ctx)
    d = resolve.domain(st.nb, domain)
    st.nb.delete_domain(d.id, if_match=True)
    emit(st.output, {"deleted": d.id}, lambda: out.print(f"domain {d.name} deleted"))
