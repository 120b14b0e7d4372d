"""`numa-balloon migrations ...` and `numa-balloon migrate DOMAIN --to HOST [--wait]`."""

from __future__ import annotations

from typing import Annotated, Literal

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from numa_balloon_cli import resolve
from numa_balloon_cli.output import emit, err, fields, out, table
from numa_balloon_cli.state import Exit, State, state
from numa_balloon_client import models as m
from numa_balloon_client import progress

app = typer.Typer(no_args_is_help=True)
Strategy = Literal["rebalance", "replug"]

DomainArg = Annotated[str, typer.Argument(help="Domain name or id")]
ToOpt = Annotated[str, typer.Option("--to", help="Destination host name or id")]
StrategyOpt = Annotated[
    Strategy,
    typer.Option(help="rebalance: fewest MiB moved; replug: unplug all, migrate, replug"),
]
IdArg = Annotated[str, typer.Argument(help="Migration id")]


def show_plan(p: m.PlanOut) -> None:
    fields(
        [
            ("feasible", p.feasible),
            ("reason", p.reason),
            ("moved MiB", p.moved_mib),
            ("distortion", f"{p.distortion_before:.3f} -> {p.distortion_after:.3f}"),
            ("remote fraction", f"{p.remote_fraction_before:.3f} -> {p.remote_fraction_after:.3f}"),
            ("mapping", f"{p.mapping_before} -> {p.mapping_after}"),
        ]
    )
    rows = [(s.seq, s.phase, s.op, s.vnode, s.pnode, s.mib) for s in p.steps]
    table("steps", ["SEQ", "PHASE", "OP", "VNODE", "PNODE", "MiB"], rows)


def show_migration(mig: m.MigrationOut) -> None:
    stuck = (mig.model_extra or {}).get("stuck")
    fields(
        [
            ("id", mig.id),
            ("domain", mig.domain_id),
            ("state", mig.state),
            ("strategy", mig.strategy),
            ("from", mig.source_host_id),
            ("to", mig.destination_host_id),
            ("reason", mig.reason),
            ("stuck", stuck),
        ]
    )
    rows = [(phase, f"{done}/{total}") for phase, (done, total) in progress(mig).items()]
    table("steps acknowledged per phase", ["PHASE", "DONE"], rows)


@app.command("plan")
def plan(
    ctx: typer.Context, domain: DomainArg, to: ToOpt, strategy: StrategyOpt = "rebalance"
) -> None:
    """What a migration would do; nothing is claimed."""
    st = state(ctx)
    p = st.nb.plan_migration(resolve.domain_id(st.nb, domain), resolve.host_id(st.nb, to), strategy)
    emit(st.output, p, lambda: show_plan(p))


def _start(st: State, domain: str, to: str, strategy: str) -> m.MigrationOut:
    return st.nb.start_migration(
        resolve.domain_id(st.nb, domain),
        resolve.host_id(st.nb, to),
        strategy,  # type: ignore[arg-type]
    )


@app.command("start")
def start(
    ctx: typer.Context, domain: DomainArg, to: ToOpt, strategy: StrategyOpt = "rebalance"
) -> None:
    """Claim the destination memory and create the migration (state planned)."""
    st = state(ctx)
    mig = _start(st, domain, to, strategy)
    emit(st.output, mig, lambda: out.print(f"migration {mig.id} {mig.state}"))


@app.command("get")
def get(ctx: typer.Context, migration: IdArg) -> None:
    """A migration's state and its steps' progress."""
    st = state(ctx)
    mig = st.nb.get_migration(migration)
    emit(st.output, mig, lambda: show_migration(mig))


@app.command("advance")
def advance(ctx: typer.Context, migration: IdArg) -> None:
    """Move to the next phase (409 lists the steps still pending)."""
    st = state(ctx)
    mig = st.nb.advance_migration(migration)
    emit(st.output, mig, lambda: out.print(f"migration {mig.id} {mig.state}"))


@app.command("abort")
def abort(ctx: typer.Context, migration: IdArg) -> None:
    """Release the claims and restore the source."""
    st = state(ctx)
    mig = st.nb.abort_migration(migration)
    emit(st.output, mig, lambda: out.print(f"migration {mig.id} {mig.state}"))


@app.command("list")
def list_migrations(
    ctx: typer.Context,
    domain: Annotated[str | None, typer.Option(help="Only this domain's (name or id)")] = None,
    state_: Annotated[str | None, typer.Option("--state", help="e.g. preparing")] = None,
) -> None:
    """Migrations, newest last."""
    st = state(ctx)
    domain_id = resolve.domain_id(st.nb, domain) if domain else None
    items = list(st.nb.iter_migrations(domain_id=domain_id, state=state_))
    rows = [
        (x.id, x.domain_id, x.state, x.strategy, x.source_host_id, x.destination_host_id)
        for x in items
    ]
    emit(
        st.output,
        items,
        lambda: table(None, ["ID", "DOMAIN", "STATE", "STRATEGY", "FROM", "TO"], rows),
    )


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


def migrate(
    ctx: typer.Context,
    domain: DomainArg,
    to: ToOpt,
    strategy: StrategyOpt = "rebalance",
    wait: Annotated[
        bool, typer.Option(help="Drive it to its end, a progress bar per phase")
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="Give up after S seconds (exit 4; it goes on)")
    ] = None,
) -> None:
    """Start a migration; with --wait, advance it as agents ack and exit 4 unless it completes."""
    st = state(ctx)
    mig = _start(st, domain, to, strategy)
    if not wait:
        emit(st.output, mig, lambda: out.print(f"migration {mig.id} {mig.state}"))
        return
    bars = PhaseBars(enabled=st.output == "table")
    with bars.progress:
        final = st.nb.wait_for_migration(
            mig.id, advance=True, timeout_s=timeout, on_update=bars.update
        )
    emit(st.output, final, lambda: out.print(f"migration {final.id} {final.state}"))
    if final.state != "completed":
        raise typer.Exit(Exit.FAILED)
