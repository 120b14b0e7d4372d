"""The per-invocation state: where the service is, the output format, one client, exit codes."""

from __future__ import annotations

from dataclasses import dataclass, field

import typer

from numa_balloon_client import Client
from numa_balloon_client.programs.exits import Exit  # shared with the agents

__all__ = ["Exit", "State", "state"]


@dataclass
class State:
    url: str
    token: str | None
    output: str
    _client: Client | None = field(default=None, repr=False)

    @property
    def nb(self) -> Client:
        if self._client is None:
            self._client = Client(self.url, self.token)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    assert isinstance(obj, State), "the root callback sets the state"
    return obj
