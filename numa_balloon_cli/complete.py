"""Shell completion of names: `numa-balloon hosts get comp<TAB>` asks the service.

Completion runs without the root callback (click parses the line resiliently), so the service is
found here from the flags already typed, the environment and the profile. One quick attempt: a
service that is away or refuses completes nothing rather than stalling the shell or printing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import typer

from numa_balloon_cli.config import ConfigError, resolve
from numa_balloon_client import Client, NumaBalloonError, RetryPolicy

TIMEOUT_S = 3.0
Completer = Callable[[typer.Context, str], list[str]]


def _client(ctx: typer.Context) -> Client:
    params = ctx.find_root().params
    target = resolve(params.get("url"), params.get("token"), params.get("profile"))
    return Client(target.url, target.token, timeout_s=TIMEOUT_S, retry=RetryPolicy(attempts=1))


def _completer(words: Callable[[Client], Iterable[str]]) -> Completer:
    def complete(ctx: typer.Context, incomplete: str) -> list[str]:
        try:
            with _client(ctx) as nb:
                return sorted({w for w in words(nb) if w.startswith(incomplete)})
        except (ConfigError, NumaBalloonError):
            return []

    return complete


hosts = _completer(lambda nb: (h.name for h in nb.iter_hosts()))
domains = _completer(lambda nb: (d.name for d in nb.iter_domains()))
keys = _completer(lambda nb: (k.name for k in nb.iter_api_keys()))


def _migration_words(nb: Client) -> list[str]:
    """A migration is named by its id or its domain: the ids, and the domains that have one."""
    migs = list(nb.iter_migrations())
    names = {d.id: d.name for d in nb.iter_domains()}
    return [x.id for x in migs] + [names[x.domain_id] for x in migs if x.domain_id in names]


migrations = _completer(_migration_words)
