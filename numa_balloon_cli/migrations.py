"""`numa-balloon migrations ...` and `numa-balloon migrate DOMAIN --to HOST [--wait]`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from numa_balloon_cli import complete, describe, resolve
from numa_balloon_cli.hosts import CountOpt, WatchOpt
from numa_balloon_cli.output import emit, err, fields, out, table, tagged, when
from numa_balloon_cli.state import Exit, State, state
from numa_balloon_cli.watching import Listing, follow
from numa_balloon_client import WaitTimeout, progress
from numa_balloon_client import models as m

app = typer.Typer(no_args_is_help=True)
Strategy = Literal["rebalance", "replug"]

DomainArg = Annotated[
    str,
    typer.Argument(
        metavar="DOMAIN", help="Domain name, id or id prefix", autocompletion=complete.domains
    ),
]
ToOpt = Annotated[
    str,
    typer.Option(
        "--to", metavar="HOST", help="Destination host name or id", autocompletion=complete.hosts
    ),
]
StrategyOpt = Annotated[
    Strategy,
    typer.Option(
        metavar="STRATEGY",
        help="rebalance: fewest MiB moved; replug: unplug all, migrate, replug",
    ),
]
MigrationArg = Annotated[
    str,
    typer.Argument(
        metavar="MIGRATION",
        help="Migration id, id prefix, or its domain's name (the one in flight, else the newest)",
        autocompletion=complete.migrations,
    ),
]
DryRunOpt = Annotated[
    bool, typer.Option(help="Show the service's plan for it (nothing is claimed) and stop")
]
#: `migrate --wait` says who it waits for once nothing has moved for this long.
STALL_S = 10.0


def show_plan(st: State, p: m.PlanOut) -> None:
    fields(
        [
            ("domain", st.names.domain(p.domain_id)),
            ("from", st.names.host(p.source_host_id)),
            ("to", st.names.host(p.destination_host_id)),
            ("strategy", p.strategy),
            ("feasible", p.feasible),
            ("reason", p.reason),
            ("moved MiB", p.moved_mib),
            ("target MiB", f"{p.target_before_mib} -> {p.target_after_mib}"),
            ("distortion", f"{p.distortion_before:.3f} -> {p.distortion_after:.3f}"),
            ("remote fraction", f"{p.remote_fraction_before:.3f} -> {p.remote_fraction_after:.3f}"),
            ("mapping", f"{p.mapping_before} -> {p.mapping_after}"),
        ]
    )
    rows = [
        (s.seq, s.phase, s.op, st.names.host(s.host_id), s.vnode, s.pnode, s.mib) for s in p.steps
    ]
    table("steps", ["SEQ", "PHASE", "OP", "HOST", "VNODE", "PNODE", "MiB"], rows)


def show_migration(st: State, mig: m.MigrationOut) -> None:
    describe.migration_fields(st, mig)
    rows = [(phase, f"{done}/{total}") for phase, (done, total) in progress(mig).items()]
    table("steps acknowledged per phase", ["PHASE", "DONE"], rows)


def said(st: State, mig: m.MigrationOut, sep: str = ":") -> str:
    """`migration 3f2a... of web (a -> b): preparing`."""
    route = f"{st.names.host(mig.source_host_id)} -> {st.names.host(mig.destination_host_id)}"
    return f"migration {mig.id} of {st.names.domain(mig.domain_id)} ({route}){sep} {mig.state}"


def _plan(st: State, domain: str, to: str, strategy: str) -> m.PlanOut:
    return st.nb.plan_migration(
        resolve.domain_id(st.nb, domain),
        resolve.host_id(st.nb, to),
        strategy,  # type: ignore[arg-type]
    )


@app.command("plan")
def plan(
    ctx: typer.Context, domain: DomainArg, to: ToOpt, strategy: StrategyOpt = "rebalance"
) -> None:
    """What a migration would do; nothing is claimed."""
    st = state(ctx)
    p = _plan(st, domain, to, strategy)
    emit(st.output, p, lambda: show_plan(st, p))


def _dry_run(st: State, domain: str, to: str, strategy: str) -> None:
    """`--dry-run` of start and migrate: the plan, and exit 1 when the start would be refused."""
    p = _plan(st, domain, to, strategy)

    def human() -> None:
        show_plan(st, p)
        if p.feasible:
            out.print("dry run: nothing claimed or started")

    emit(st.output, p, human)
    if not p.feasible:
        err.print(tagged("error", "red", f"the migration cannot be done: {p.reason}"))
        raise typer.Exit(Exit.REFUSED)


def _start(st: State, domain: str, to: str, strategy: str) -> m.MigrationOut:
    return st.nb.start_migration(
        resolve.domain_id(st.nb, domain),
        resolve.host_id(st.nb, to),
        strategy,  # type: ignore[arg-type]
    )


@app.command("start")
def start(
    ctx: typer.Context,
    domain: DomainArg,
    to: ToOpt,
    strategy: StrategyOpt = "rebalance",
    dry_run: DryRunOpt = False,
) -> None:
    """Claim the destination memory and create the migration (state planned)."""
    st = state(ctx)
    if dry_run:
        _dry_run(st, domain, to, strategy)
        return
    mig = _start(st, domain, to, strategy)
    emit(st.output, mig, lambda: out.print(said(st, mig)))


@app.command("get")
def get(ctx: typer.Context, migration: MigrationArg) -> None:
    """A migration's state and its steps' progress."""
    st = state(ctx)
    mig = resolve.migration(st.nb, migration)
    emit(st.output, mig, lambda: show_migration(st, mig))


@app.command("describe")
def describe_migration(ctx: typer.Context, migration: MigrationArg) -> None:
    """A migration: plan, claims, every step and who it waits for, and its recent events."""
    st = state(ctx)
    view = describe.MigrationView.read(st, resolve.migration(st.nb, migration))
    emit(st.output, view.document(), view.show)


@app.command("advance")
def advance(ctx: typer.Context, migration: MigrationArg) -> None:
    """Move to the next phase (409 lists the steps still pending)."""
    st = state(ctx)
    mig = st.nb.advance_migration(resolve.migration(st.nb, migration).id)
    emit(st.output, mig, lambda: out.print(said(st, mig)))


@app.command("abort")
def abort(
    ctx: typer.Context,
    migration: MigrationArg,
    runs_on: Annotated[
        Literal["source", "destination"] | None,
        typer.Option(
            metavar="WHERE",
            help="source or destination: where the domain runs now (needed while migrating, "
            "once the live migration may have run)",
        ),
    ] = None,
) -> None:
    """Release the claims and restore the source (or, --runs-on destination, settle there)."""
    st = state(ctx)
    mig = st.nb.abort_migration(resolve.migration(st.nb, migration).id, runs_on=runs_on)
    emit(st.output, mig, lambda: out.print(said(st, mig)))


COLUMNS = ["ID", "DOMAIN", "STATE", "STRATEGY", "FROM", "TO"]
WIDE = ["PROGRESS", "STUCK", "CREATED", "REASON"]


def migration_row(st: State, x: m.MigrationOut) -> list[Any]:
    row: list[Any] = [
        x.id,
        st.names.domain(x.domain_id),
        x.state,
        x.strategy,
        st.names.host(x.source_host_id),
        st.names.host(x.destination_host_id),
    ]
    if st.wide:
        done = sum(d for d, _ in progress(x).values())
        total = sum(t for _, t in progress(x).values())
        row += [f"{done}/{total}", "yes" if x.stuck else None, when(x.created_at), x.reason]
    return row


@app.command("list")
def list_migrations(
    ctx: typer.Context,
    domain: Annotated[
        str | None,
        typer.Option(
            metavar="DOMAIN",
            help="Only this domain's (name or id)",
            autocompletion=complete.domains,
        ),
    ] = None,
    state_: Annotated[
        str | None, typer.Option("--state", metavar="STATE", help="e.g. preparing")
    ] = None,
    watch: WatchOpt = False,
    count: CountOpt = None,
) -> None:
    """Migrations, newest last (-o wide: progress, stuck, created, reason)."""
    st = state(ctx)
    domain_id = resolve.domain_id(st.nb, domain) if domain else None

    def fetch() -> list[m.MigrationOut]:
        items = list(st.nb.iter_migrations(domain_id=domain_id, state=state_))
        if st.human:
            st.names.domains(x.domain_id for x in items)
        return items

    columns = COLUMNS + WIDE if st.wide else COLUMNS
    if watch:
        follow(st, Listing(columns, fetch, lambda x: migration_row(st, x)), count)
        return
    items = fetch()
    emit(st.output, items, lambda: table(None, columns, [migration_row(st, x) for x in items]))


class PhaseBars:
    """One Rich progress bar per phase (steps acknowledged / total), updated per read."""

    def __init__(self, enabled: bool) -> None:
        self.progress = Progress(
            TextColumn("{task.description:>9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[state]}"),
            console=err,
            disable=not enabled,
        )
        self.tasks: dict[str, TaskID] = {}

    def update(self, mig: m.MigrationOut) -> None:
        for phase, (done, total) in progress(mig).items():
            if phase not in self.tasks:
                self.tasks[phase] = self.progress.add_task(phase, total=total, state="")
            self.progress.update(self.tasks[phase], completed=done, total=total, state=mig.state)


class Stall:
    """Says who a migration waits for once nothing has moved for `after_s` seconds, and again
    whenever that changes: a `--wait` that sits still names the agent or guest to look at."""

    def __init__(
        self,
        pending: Callable[[m.MigrationOut], list[str]],
        say: Callable[[str], None],
        after_s: float = STALL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pending, self.say, self.after_s, self.clock = pending, say, after_s, clock
        self.moved_at = clock()
        self.last: tuple[str, ...] = ()
        self.told: list[str] | None = None

    def update(self, mig: m.MigrationOut) -> None:
        now = self.clock()
        seen = (mig.state, *(s.state for s in sorted(mig.steps, key=lambda s: s.seq)))
        if seen != self.last:
            self.last, self.moved_at = seen, now
            return
        if now - self.moved_at < self.after_s:
            return
        pending = self.pending(mig)
        if pending and pending != self.told:
            self.told = pending
            idle = int(now - self.moved_at)
            self.say(f"no progress for {idle} s; {mig.state}, waiting on: " + "; ".join(pending))


def migrate(
    ctx: typer.Context,
    domain: DomainArg,
    to: ToOpt,
    strategy: StrategyOpt = "rebalance",
    wait: Annotated[
        bool, typer.Option(help="Drive it to its end, a progress bar per phase")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(min=0, metavar="SECONDS", help="Give up waiting after this long (exit 4)"),
    ] = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Start a migration; with --wait, advance it as agents ack and exit 4 unless it completes."""
    st = state(ctx)
    if dry_run:
        _dry_run(st, domain, to, strategy)
        return
    mig = _start(st, domain, to, strategy)
    if not wait:
        emit(st.output, mig, lambda: out.print(said(st, mig)))
        return
    final = _wait(st, mig, timeout)
    emit(st.output, final, lambda: out.print(said(st, final)))
    if final.state != "completed":
        raise typer.Exit(Exit.FAILED)


def _wait(st: State, mig: m.MigrationOut, timeout: float | None) -> m.MigrationOut:
    bars = PhaseBars(enabled=st.human)
    stall = Stall(
        lambda x: describe.waiting_on(st, x),
        lambda text: err.print(tagged("waiting", "yellow", text)),
    )

    def update(x: m.MigrationOut) -> None:
        bars.update(x)
        stall.update(x)

    try:
        with bars.progress:
            return st.nb.wait_for_migration(
                mig.id, advance=True, timeout_s=timeout, on_update=update
            )
    except WaitTimeout as exc:
        now = exc.migration
        domain = st.names.domain(now.domain_id)
        err.print(
            tagged(
                f"timed out after {exc.timeout_s or 0:g} s:",
                "yellow",
                f"{said(st, now, ' is still')}; it goes on "
                f"(`migrations describe {domain}`, `migrations abort {domain}`)",
            )
        )
        for line in describe.waiting_on(st, now):
            err.print(f"  waiting on {line}")
        raise typer.Exit(Exit.FAILED) from None
