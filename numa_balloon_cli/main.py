"""`numa-balloon`: hosts, domains, migrations, squeeze, rebalance, events, keys, top.

Every command speaks HTTP through `numa_balloon_client`; hosts and domains are named by name or
id. Exit codes: 0 ok, 1 the service refused (4xx, unknown name), 2 usage, 3 unavailable
(no answer, 503, 5xx), 4 the operation failed (a migration failed or was aborted).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer
from typer.core import TyperGroup

from numa_balloon_cli import cluster, domains, hosts, keys, migrations
from numa_balloon_cli.config import ConfigError, resolve
from numa_balloon_cli.output import err, problem, tagged
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
    """Turns the client's exceptions into a message on stderr and a distinct exit code."""

    def invoke(self, ctx: Any) -> Any:  # a click Context (Typer vendors its own click)
        try:
            return super().invoke(ctx)
        except (ServiceUnavailable, ServerError) as exc:
            problem(exc)
            raise typer.Exit(Exit.UNAVAILABLE) from None
        except ApiError as exc:
            problem(exc)
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


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option(help="Service URL [env NUMA_BALLOON_URL, else the profile]")
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="Bearer token [env NUMA_BALLOON_TOKEN, else the profile]")
    ] = None,
    profile: Annotated[
        str | None, typer.Option(help="Profile in ~/.config/numa-balloon/config.toml")
    ] = None,
    output: Annotated[
        Literal["table", "json", "yaml"],
        typer.Option(
            "--output", "-o", help="table, or one json/yaml document (a line each for watch)"
        ),
    ] = "table",
) -> None:
    """Talk to a numa-balloon control plane."""
    try:
        target = resolve(url, token, profile)
    except ConfigError as exc:
        err.print(tagged("error", "red", str(exc)))
        raise typer.Exit(Exit.USAGE) from None
    ctx.obj = State(target.url, target.token, output)


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
