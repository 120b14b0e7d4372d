"""The per-invocation state: where the service is, the output format, one client, exit codes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import typer

from numa_balloon_client import Client


class Exit(IntEnum):
    """What a script can tell apart without parsing the message."""

    OK = 0
    REFUSED = 1  # the service said no (4xx), or no such host/domain name
    USAGE = 2  # bad flags or arguments (Click's own code), an unusable config or file
    UNAVAILABLE = 3  # no answer, 503 after retries, or a server error (5xx)
    FAILED = 4  # the operation ran and ended badly (a migration failed or was aborted)


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
