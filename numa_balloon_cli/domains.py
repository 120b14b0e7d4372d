"""`numa-balloon domains ...`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from numa_balloon_cli import complete, describe, resolve
from numa_balloon_cli.files import load_body, parse_labels
from numa_balloon_cli.hosts import CountOpt, LabelOpt, NameOpt, WatchOpt
from numa_balloon_cli.output import emit, err, labels, out, table, tagged, when
from numa_balloon_cli.state import Exit, State, state
from numa_balloon_cli.watching import Listing, follow
from numa_balloon_client import models as m
from numa_balloon_client.ops import Definition

app = typer.Typer(no_args_is_help=True)

DomainArg = Annotated[
    str,
    typer.Argument(
        metavar="DOMAIN", help="Domain name, id or id prefix", autocompletion=complete.domains
    ),
]
HostOpt = Annotated[
    str | None,
    typer.Option(metavar="HOST", help="Host name or id", autocompletion=complete.hosts),
]
FileOpt = Annotated[
    str,
    typer.Option("--file", "-f", metavar="PATH", help="Domain body, JSON or YAML; - = stdin"),
]

COLUMNS = ["NAME", "ID", "HOST", "STATE", "TARGET MiB", "MAX MiB", "VNODES"]
WIDE = ["MIN MiB", "DYNAMIC MAX MiB", "POLICY", "UNCOOPERATIVE", "LABELS", "CREATED"]


def domain_row(st: State, d: m.DomainOut) -> list[Any]:
    row: list[Any] = [
        d.name,
        d.id,
        st.names.host(d.host_id),
        d.state,
        d.memory.target_mib,
        d.memory.static_max_mib,
        len(d.vnodes),
    ]
    if st.wide:
        row += [
            d.memory.dynamic_min_mib,
            d.memory.dynamic_max_mib,
            d.policy,
            "yes" if d.uncooperative else None,
            labels(d.labels),
            when(d.created_at),
        ]
    return row


@app.command("list")
def list_domains(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option(
            metavar="HOST", help="Only on this host (name or id)", autocompletion=complete.hosts
        ),
    ] = None,
    name: NameOpt = None,
    label: LabelOpt = None,
    watch: WatchOpt = False,
    count: CountOpt = None,
) -> None:
    """Every domain: host, state, target and size (-o wide: range, policy, labels)."""
    st = state(ctx)
    host_id = resolve.host_id(st.nb, host) if host else None

    def fetch() -> list[m.DomainOut]:
        items = st.nb.iter_domains(host_id=host_id, name=name, labels=parse_labels(label))
        return [d for d in items if name is None or d.name == name]

    columns = COLUMNS + WIDE if st.wide else COLUMNS
    if watch:
        follow(st, Listing(columns, fetch, lambda d: domain_row(st, d)), count)
        return
    items = fetch()
    emit(st.output, items, lambda: table(None, columns, [domain_row(st, d) for d in items]))


def show_domain(st: State, d: m.DomainOut) -> None:
    describe.domain_fields(st, d)
    describe.vnodes(d)


@app.command("get")
def get(ctx: typer.Context, domain: DomainArg) -> None:
    """One domain with its vnodes, targets and backing."""
    st = state(ctx)
    d = resolve.domain(st.nb, domain)
    emit(st.output, d, lambda: show_domain(st, d))


@app.command("describe")
def describe_domain(ctx: typer.Context, domain: DomainArg) -> None:
    """A domain, its vnodes, its last migrations and its recent events."""
    st = state(ctx)
    view = describe.DomainView.read(st, resolve.domain(st.nb, domain))
    emit(st.output, view.document(), view.show)


@app.command("create")
def create(
    ctx: typer.Context,
    file: FileOpt,
    host: HostOpt = None,
    idempotency_key: Annotated[
        str | None, typer.Option(metavar="KEY", help="Reuse to make a retry safe")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(help="Where it would go (the service's placement preview); create nothing"),
    ] = False,
) -> None:
    """Create a domain from a file; without a host the service picks the best one."""
    st = state(ctx)
    body = load_body(file)
    if host is not None:
        body["host_id"] = resolve.host_id(st.nb, host)
    if dry_run:
        _preview(st, body)
        return
    d = st.nb.create_domain(body, idempotency_key=idempotency_key)

    def human() -> None:
        out.print(f"domain {d.name} created on host {st.names.host(d.host_id)}: {d.id}")
        out.print(f"guest token (shown once): {d.guest_token}")

    emit(st.output, d, human)


def _preview(st: State, body: dict[str, Any]) -> None:
    """`create --dry-run`: the hosts ranked as the create would try them (nothing is claimed,
    so a create later may still find the host taken; a taken name shows only then)."""
    preview = st.nb.place(body)
    best = next((p for p in preview.hosts if p.feasible), None)
    name = body.get("name", "the domain")

    def human() -> None:
        if best is not None:
            out.print(f"domain {name} would be created on host {best.host_name} (dry run)")
        placements_table(preview.hosts)

    emit(st.output, preview, human)
    if best is None:
        reasons = "; ".join(f"{p.host_name}: {p.reason}" for p in preview.hosts) or "no host"
        err.print(tagged("error", "red", f"no host can take domain {name}: {reasons}"))
        raise typer.Exit(Exit.REFUSED)


@app.command("set-target")
def set_target(
    ctx: typer.Context,
    domain: DomainArg,
    target_mib: Annotated[
        int, typer.Argument(min=0, metavar="TARGET_MIB", help="New balloon target, MiB")
    ],
    policy: Annotated[
        Literal["proportional", "round-robin", "nearest", "faithful"] | None,
        typer.Option(metavar="POLICY", help="proportional, round-robin, nearest or faithful"),
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


def placements_table(hosts: list[m.PlacementOut]) -> None:
    rows = [
        (
            p.host_name,
            p.feasible,
            _num(p.score),
            _num(p.distortion),
            " ".join(map(str, p.mapping)),
            p.free_mib,
            p.max_feasible_mib,
            p.reason,
        )
        for p in hosts
    ]
    columns = ["HOST", "FEASIBLE", "SCORE", "DISTORTION", "MAPPING", "FREE MiB"]
    table(None, [*columns, "MAX FEASIBLE MiB", "REASON"], rows)


@app.command("placements")
def placements(
    ctx: typer.Context,
    domain: Annotated[
        str | None,
        typer.Argument(
            metavar="DOMAIN", help="Rank hosts for this domain", autocompletion=complete.domains
        ),
    ] = None,
    file: Annotated[
        str | None,
        typer.Option("--file", "-f", metavar="PATH", help="Or a domain body: nothing is created"),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="With --file: at most N hosts")
    ] = None,
) -> None:
    """Hosts ranked for a domain (or for a domain body, with --file)."""
    st = state(ctx)
    if (domain is None) == (file is None):
        raise typer.BadParameter("give a DOMAIN or --file, one of the two")
    ranked: m.Placements | m.PlacementPreview
    if domain is not None:
        ranked = st.nb.domain_placements(resolve.domain_id(st.nb, domain))
    else:
        ranked = st.nb.place(load_body(file or "-"), limit=limit)
    emit(st.output, ranked, lambda: placements_table(ranked.hosts))


def _num(value: object) -> object:
    return f"{value:.3f}" if isinstance(value, float) else value


@app.command("export")
def export(
    ctx: typer.Context,
    domain: DomainArg,
    fmt: Annotated[
        Literal["xl", "libvirt", "libvirt-domain", "xenstore"],
        typer.Option("--format", metavar="FORMAT", help="xl, libvirt, libvirt-domain or xenstore"),
    ] = "xl",
    domain_type: Annotated[
        Literal["kvm", "qemu"] | None,
        typer.Option(
            "--domain-type", metavar="TYPE", help="libvirt-domain: kvm (default) or qemu (no KVM)"
        ),
    ] = None,
    kernel: Annotated[
        str | None,
        typer.Option(metavar="PATH", help="libvirt-domain: a kernel to boot (path on the host)"),
    ] = None,
    initrd: Annotated[
        str | None, typer.Option(metavar="PATH", help="libvirt-domain: its initrd")
    ] = None,
    cmdline: Annotated[
        str | None, typer.Option(metavar="TEXT", help="libvirt-domain: its command line")
    ] = None,
    serial_log: Annotated[
        str | None,
        typer.Option("--serial-log", metavar="PATH", help="libvirt-domain: the console to a file"),
    ] = None,
) -> None:
    """The domain's vNUMA as an xl.cfg block, libvirt XML (the <numa> cell and devices, or with
    `libvirt-domain` a whole definition) or xenstore keys (as text)."""
    st = state(ctx)
    definition = Definition(domain_type, kernel, initrd, cmdline, serial_log)
    text = st.nb.export_domain(
        resolve.domain_id(st.nb, domain),
        fmt,
        definition if definition != Definition() else None,
    )
    emit(st.output, {"format": fmt, "text": text}, lambda: print(text, end=""))


@app.command("delete")
def delete(ctx: typer.Context, domain: DomainArg) -> None:
    """Remove a domain and free its memory."""
    st = state(ctx)
    d = resolve.domain(st.nb, domain)
    st.nb.delete_domain(d.id, if_match=True)
    emit(st.output, {"deleted": d.id}, lambda: out.print(f"domain {d.name} deleted"))
