"""`numa-balloon`: hosts, domains, migrations, squeeze, rebalance, events, keys, top.

Every command speaks HTTP through `numa_balloon_client`; hosts, domains, migrations and keys are
named by name, id or a unique id prefix, and `-o/--output` goes anywhere on the line. Exit codes:
0 ok, 1 the service refused (4xx, unknown name), 2 usage, 3 unavailable (no answer, 503, 5xx),
4 the operation failed (a migration failed or was aborted, or --wait timed out).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from numa_balloon_cli import cluster, domains, hosts, keys, migrations
from numa_balloon_cli.anywhere import (
    OUTPUT_HELP,
    PROFILE_HELP,
    TOKEN_HELP,
    URL_HELP,
    accept_anywhere,
)
from numa_balloon_cli.config import ConfigError
from numa_balloon_cli.output import Format, err, problem, tagged
from numa_balloon_cli.resolve import Unknown
from numa_balloon_cli.state import Exit, State
from numa_balloon_client import (
    ApiError,
    ConnectionFailed,
    NumaBalloonError,
    ServerError,
    ServiceUnavailable,
    StepFailed,
    SysfsError,
    WaitTimeout,
)


class Group(TyperGroup):
    """Turns the client's exceptions into a message on stderr and a distinct exit code; gives
    every subcommand the global flags."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        accept_anywhere(self)

    def invoke(self, ctx: Any) -> Any:  # a click Context (Typer vendors its own click)
        try:
            return super().invoke(ctx)
        except (ServiceUnavailable, ServerError) as exc:
            problem(exc)
            raise typer.Exit(Exit.UNAVAILABLE) from None
        except ApiError as exc:
            obj = ctx.obj
            named = exc.status == 409 and isinstance(obj, State) and obj.human
            problem(exc, obj.names.in_text if named else str)
            raise typer.Exit(Exit.REFUSED) from None
        except ConnectionFailed as exc:
            err.print(tagged("unavailable", "red", str(exc)))
            raise typer.Exit(Exit.UNAVAILABLE) from None
        except (StepFailed, WaitTimeout) as exc:
            err.print(tagged("failed", "red", str(exc)))
            raise typer.Exit(Exit.FAILED) from None
        except Unknown as exc:
            err.print(tagged("error", "red", str(exc)))
            raise typer.Exit(Exit.REFUSED) from None
        except (ConfigError, SysfsError, NumaBalloonError) as exc:
            err.print(tagged("error", "red", str(exc)))
            raise typer.Exit(Exit.USAGE) from None
        finally:
            if isinstance(ctx.obj, State):
                ctx.obj.close()


app = typer.Typer(
    cls=Group,
    help=__doc__,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        try:
            print(f"numa-balloon {version('numa-balloon')}")
        except PackageNotFoundError:  # run from a tree that was never installed
            print("numa-balloon (not installed)")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(metavar="URL", help=URL_HELP)] = None,
    token: Annotated[str | None, typer.Option(metavar="TOKEN", help=TOKEN_HELP)] = None,
    profile: Annotated[str | None, typer.Option(metavar="NAME", help=PROFILE_HELP)] = None,
    output: Annotated[
        Format, typer.Option("--output", "-o", metavar="FORMAT", help=OUTPUT_HELP)
    ] = "table",
    _: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_version, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """Talk to a numa-balloon control plane."""
    ctx.obj = State(url, token, profile, output)


app.add_typer(hosts.app, name="hosts", help="Register, inspect, drain and remove hosts.")
app.add_typer(domains.app, name="domains", help="Create, inspect, size and export domains.")
app.add_typer(migrations.app, name="migrations", help="Plan, start and drive migrations.")
app.add_typer(cluster.cluster_app, name="cluster", help="Cluster totals and the template.")
app.add_typer(cluster.events_app, name="events", help="The audit log: list and follow it.")
app.add_typer(keys.app, name="keys", help="API keys: create, list, get, revoke, rotate.")
app.command("migrate")(migrations.migrate)
app.command("squeeze")(hosts.squeeze)
app.command("rebalance")(hosts.rebalance)
app.command("top")(cluster.top)


if __name__ == "__main__":
    app()
