"""Hosts, domains, migrations and API keys by name, id or unique id prefix, wherever the CLI
names one.

A full id is read directly; otherwise a name (a migration is named by its domain: the one in
flight, else the newest), and failing that a unique id prefix of at least `MIN_PREFIX` hex digits
(`migrations get 3f2a9c`, as git and docker take them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TypeVar

from numa_balloon_client import TERMINAL, Client, NotFound
from numa_balloon_client import models as m

T = TypeVar("T")
UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
PREFIX = re.compile(r"^[0-9a-fA-F][0-9a-fA-F-]*$")
MIN_PREFIX = 4


class Unknown(Exception):
    """Nothing has that name or id (or several do): the user's mistake, exit code 1."""


def _by_id(read: Callable[[str], T], ref: str) -> T | None:
    if not UUID.match(ref):
        return None
    try:
        return read(ref)
    except NotFound:
        return None  # a host may be named like a UUID


def _by_prefix(kind: str, ref: str, candidates: Iterable[T], id_of: Callable[[T], str]) -> T:
    if len(ref.replace("-", "")) < MIN_PREFIX or not PREFIX.match(ref):
        raise Unknown(f"no {kind} named or with id {ref!r}")
    found = [c for c in candidates if id_of(c).startswith(ref.lower())]
    if not found:
        raise Unknown(f"no {kind} named or with id {ref!r}")
    if len(found) > 1:
        ids = ", ".join(id_of(c) for c in found[:5])
        raise Unknown(f"{len(found)} {kind}s have ids starting with {ref!r} ({ids}): say more")
    return found[0]


def _named(kind: str, ref: str, found: list[T]) -> T | None:
    if len(found) > 1:
        raise Unknown(f"{len(found)} {kind}s are named {ref!r}: use the id")
    return found[0] if found else None


def host(nb: Client, ref: str) -> m.HostOut:
    if (h := _by_id(nb.get_host, ref)) is not None:
        return h
    named = _named("host", ref, [h for h in nb.iter_hosts(name=ref) if h.name == ref])
    if named is None:
        named = _by_prefix("host", ref, nb.iter_hosts(), lambda h: h.id)
    return nb.get_host(named.id)  # a fresh read: its ETag guards writes


def domain(nb: Client, ref: str) -> m.DomainOut:
    if (d := _by_id(nb.get_domain, ref)) is not None:
        return d
    named = _named("domain", ref, [d for d in nb.iter_domains(name=ref) if d.name == ref])
    if named is None:
        named = _by_prefix("domain", ref, nb.iter_domains(), lambda d: d.id)
    return nb.get_domain(named.id)


def migration(nb: Client, ref: str) -> m.MigrationOut:
    """By id, by its domain's name (the domain's migration in flight, else its newest), or by a
    unique id prefix."""
    if (mig := _by_id(nb.get_migration, ref)) is not None:
        return mig
    named = [d for d in nb.iter_domains(name=ref) if d.name == ref]
    if (d := _named("domain", ref, named)) is not None:
        migs = list(nb.iter_migrations(domain_id=d.id))
        if not migs:
            raise Unknown(f"domain {ref!r} has no migration")
        live = [x for x in migs if x.state not in TERMINAL]
        return (live or migs)[-1]
    return _by_prefix("migration", ref, nb.iter_migrations(), lambda x: x.id)


def key(nb: Client, ref: str) -> m.ApiKeyOut:
    if (k := _by_id(nb.get_api_key, ref)) is not None:
        return k
    keys = list(nb.iter_api_keys())
    if (named := _named("key", ref, [k for k in keys if k.name == ref])) is not None:
        return named
    return _by_prefix("key", ref, keys, lambda k: k.id)


def host_id(nb: Client, ref: str) -> str:
    return host(nb, ref).id


def domain_id(nb: Client, ref: str) -> str:
    return domain(nb, ref).id


def subject_id(nb: Client, ref: str) -> str:
    """An event subject: a full id as it is (the subject may be gone: its events stay), else a
    host's or a domain's name (hosts first), else a migration's unique id prefix."""
    if UUID.match(ref):
        return ref
    for read in (host, domain, migration):
        try:
            return read(nb, ref).id
        except Unknown:
            continue
    raise Unknown(f"no host, domain or migration named or with id {ref!r}")
