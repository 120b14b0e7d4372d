"""The failover planner's inputs as the service reads them (issue 26): rows from
`service.db.failover` turned into the engine's arrays, shared by the plan, the protection's
kept state (`service.core.failover_kept`) and recovery."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from service.db.failover import HostRows, ProtectedRows, load_hosts, load_protected, parse_slit
from service.engine.failover import FailoverHosts, GuestShape, ProtectedDomains

Selector = list[tuple[str, str]]

# Guest shapes by key, shared by every plan of the worker (immutable; a cluster has few).
_GUESTS: dict[str, GuestShape] = {}
_GUESTS_MAX = 200_000


def guest_of(prot: ProtectedRows, key: str) -> GuestShape:
    """The engine's guest shape for a shape key of ``prot``, built once per worker."""
    g = _GUESTS.get(key)
    if g is None:
        if len(_GUESTS) >= _GUESTS_MAX:
            _GUESTS.clear()
        t, c, d = prot.shapes[key]
        g = _GUESTS[key] = GuestShape(restart_mib=t, vcpu_count=c, vdist=d)
    return g


def eligible(states: Sequence[str], agents: Sequence[str | None]) -> np.ndarray:
    """Hosts that may receive restarts: active ones whose agent is not lost (a host whose agent
    never took a lease is not judged: see `service.core.leases`)."""
    return np.array(
        [s == "active" and a != "lost" for s, a in zip(states, agents, strict=True)], dtype=bool
    )


@dataclass(frozen=True)
class Inputs:
    """What one plan read: the rows (for ids and names) and the engine's arrays."""

    hosts: HostRows
    protected: ProtectedRows
    engine_hosts: FailoverHosts
    engine_domains: ProtectedDomains


def engine_hosts(hosts: HostRows) -> FailoverHosts:
    keys: dict[str, int] = {}
    shape = np.array([keys.setdefault(k, len(keys)) for k in hosts.keys], dtype=np.int64)
    return FailoverHosts(
        free_mib=hosts.free_mib,
        squeezable_mib=hosts.squeezable_mib,
        eligible=eligible(hosts.states, hosts.agents),
        shape=shape,
        shapes=tuple(parse_slit(hosts.slits[k]) for k in keys),
    )


def _kept(prot: ProtectedRows, keep: list[int]) -> ProtectedRows:
    return ProtectedRows(
        ids=[prot.ids[i] for i in keep],
        names=[prot.names[i] for i in keep],
        host_ids=[prot.host_ids[i] for i in keep],
        shape_keys=[prot.shape_keys[i] for i in keep],
        shapes=prot.shapes,
    )


def engine_domains(prot: ProtectedRows, index: dict[str, int]) -> ProtectedDomains:
    """One entry per domain, each distinct shape once (the planner searches per shape)."""
    at: dict[str, int] = {}
    guests: list[GuestShape] = []
    guest = np.empty(len(prot.ids), dtype=np.int64)
    for i, k in enumerate(prot.shape_keys):
        g = at.get(k)
        if g is None:
            g = at[k] = len(guests)
            guests.append(guest_of(prot, k))
        guest[i] = g
    host = np.array([index[h] for h in prot.host_ids], dtype=np.int64)
    return ProtectedDomains(host=host, guest=guest, guests=tuple(guests))


def load_inputs(
    session: Session, selector: Selector, *, protected_on: Sequence[str] | None = None
) -> Inputs:
    hosts = load_hosts(session)
    prot = load_protected(session, selector, host_ids=protected_on)
    index = hosts.index()
    # a domain on a host registered after the hosts were read waits for the next plan
    keep = [i for i, h in enumerate(prot.host_ids) if h in index]
    if len(keep) != len(prot.ids):
        prot = _kept(prot, keep)
    return Inputs(
        hosts=hosts,
        protected=prot,
        engine_hosts=engine_hosts(hosts),
        engine_domains=engine_domains(prot, index),
    )
