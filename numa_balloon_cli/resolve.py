"""Hosts and domains by name or id, wherever the CLI names one."""

from __future__ import annotations

import re
from typing import TypeVar

from numa_balloon_client import Client, NotFound
from numa_balloon_client import models as m

T = TypeVar("T")
UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


class Unknown(Exception):
    """No host/domain has that name (or several do): the user's mistake, exit code 1."""


def host(nb: Client, ref: str) -> m.HostOut:
    if UUID.match(ref):
        try:
            return nb.get_host(ref)
        except NotFound:
            pass  # a host may be named like a UUID
    found = [h for h in nb.iter_hosts(name=ref) if h.name == ref]
    return nb.get_host(_one("host", ref, found).id)  # a fresh read: its ETag guards writes


def domain(nb: Client, ref: str) -> m.DomainOut:
    if UUID.match(ref):
        try:
            return nb.get_domain(ref)
        except NotFound:
            pass
    found = [d for d in nb.iter_domains(name=ref) if d.name == ref]
    return nb.get_domain(_one("domain", ref, found).id)


def host_id(nb: Client, ref: str) -> str:
    return host(nb, ref).id


def domain_id(nb: Client, ref: str) -> str:
    return domain(nb, ref).id


def _one(kind: str, ref: str, found: list[T]) -> T:
    if not found:
        raise Unknown(f"no {kind} named or with id {ref!r}")
    if len(found) > 1:
        raise Unknown(f"{len(found)} {kind}s are named {ref!r}: use the id")
    return found[0]


def host_names(nb: Client) -> dict[str, str]:
    """id -> name of every host, to show names instead of ids in tables."""
    return {h.id: h.name for h in nb.iter_hosts()}
