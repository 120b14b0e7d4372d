"""The global flags, accepted anywhere on the line (kubectl style).

`numa-balloon -o json hosts list` and `numa-balloon hosts list -o json` mean the same: the root
takes `-o/--output`, `--url`, `--token` and `--profile` before the subcommand, and every group and
command below it takes them too (`--url`, `--token`, `--profile` hidden from its help). Given
after the subcommand, a flag overwrites what the root set, so the last one on the line wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

import typer

from numa_balloon_cli.output import Format
from numa_balloon_cli.state import State

OUTPUT_HELP = "table, wide (more columns), json or yaml (one document; a line each for watches)"
URL_HELP = "Service URL [env NUMA_BALLOON_URL, else the profile]"
TOKEN_HELP = "Bearer token [env NUMA_BALLOON_TOKEN, else the profile]"
PROFILE_HELP = "Profile in ~/.config/numa-balloon/config.toml"


def _store(attr: str) -> Callable[[typer.Context, Any], None]:
    def callback(ctx: typer.Context, value: Any) -> None:
        root = ctx.find_root().obj
        if value is not None and isinstance(root, State):  # no State while completing
            setattr(root, attr, value)

    return callback


def _flags(
    output: Annotated[
        Format | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FORMAT",
            help=OUTPUT_HELP,
            callback=_store("output"),
            expose_value=False,
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(metavar="URL", hidden=True, callback=_store("url"), expose_value=False),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(metavar="TOKEN", hidden=True, callback=_store("token"), expose_value=False),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(metavar="NAME", hidden=True, callback=_store("profile"), expose_value=False),
    ] = None,
) -> None:
    """Never run: Typer builds the flags' click parameters from this signature."""


def flags() -> list[Any]:
    """Fresh click parameters for the global flags, built by Typer like every other option."""
    app = typer.Typer(add_completion=False)
    app.command()(_flags)
    return list(typer.main.get_command(app).params)


def subcommands(group: Any) -> Iterator[Any]:
    """Every group and command below `group` (a click Group), depth first."""
    for command in getattr(group, "commands", {}).values():
        yield command
        yield from subcommands(command)


def accept_anywhere(root: Any) -> None:
    """Give every command below the root the global flags (once: Typer builds the tree anew
    for every invocation)."""
    for command in subcommands(root):
        command.params.extend(flags())
