"""The per-invocation state: where the service is, the output format, one client, exit codes."""

from __future__ import annotations

from dataclasses import dataclass, field

import typer

from numa_balloon_cli.config import resolve
from numa_balloon_cli.names import Names
from numa_balloon_cli.output import HUMAN
from numa_balloon_client import Client
from numa_balloon_client.programs.exits import Exit  # shared with the agents

__all__ = ["Exit", "State", "state"]


@dataclass
class State:
    """The global flags as given (before or after the subcommand: the last one wins); the
    service is found from them only when a command first talks to it."""

    url: str | None = None
    token: str | None = None
    profile: str | None = None
    output: str = "table"
    _client: Client | None = field(default=None, repr=False)
    _names: Names | None = field(default=None, repr=False)

    @property
    def human(self) -> bool:
        return self.output in HUMAN

    @property
    def wide(self) -> bool:
        return self.output == "wide"

    @property
    def nb(self) -> Client:
        if self._client is None:
            target = resolve(self.url, self.token, self.profile)  # ConfigError: exit 2
            self._client = Client(target.url, target.token)
        return self._client

    @property
    def names(self) -> Names:
        if self._names is None:
            self._names = Names(self.nb)
        return self._names

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    assert isinstance(obj, State), "the root callback sets the state"
    return obj
