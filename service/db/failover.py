"""What the failover planner reads (issue 26): every host as (hosts x pnodes) matrices, what
squeezing could give back per pnode, and the protected domains with their restart shapes.

Three statements whatever the cluster's size: the pnodes of every host (with its state and
SLIT), the squeezable MiB per (host, pnode) aggregated in the database, and the vnodes of the
protected domains. No ORM object per row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Text, cast, func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session

from service.db.models import Backing, Domain, Host, Pnode, Vnode

IntArray = NDArray[np.int64]

# The domains a plan protects: those that run (or are on their way to run) on a host.
PROTECTABLE_STATES = ("running", "migrating", "restarting")


@dataclass(frozen=True)
class HostRows:
    """Every host in creation order: ids, names, states, and the planner's matrices
    (zero-padded past a host's pnodes)."""

    ids: list[str]
    names: list[str]
    states: list[str]
    free_mib: IntArray
    squeezable_mib: IntArray
    shape: IntArray
    shapes: list[IntArray]

    def index(self) -> dict[str, int]:
        return {h: i for i, h in enumerate(self.ids)}


@dataclass(frozen=True)
class ProtectedRows:
    """The protected domains, in creation order: ids, names, host ids, and per vnode the MiB it
    runs with, its vCPUs and the domain's virtual distances."""

    ids: list[str]
    names: list[str]
    host_ids: list[str]
    restart_mib: list[list[int]]
    vcpu_count: list[list[int]]
    distances: list[list[list[int]]]


def load_hosts(session: Session) -> HostRows:
    """Every host (a failed host may be in maintenance or offline) with its pnode counters."""
    hosts = session.execute(
        select(Host.id, Host.name, Host.state, cast(Host.distances, Text)).order_by(
            Host.created_at, Host.id
        )
    ).all()
    ids = [str(h[0]) for h in hosts]
    names = [str(h[1]) for h in hosts]
    states = [str(h[2]) for h in hosts]
    slits = [str(h[3]) for h in hosts]
    at = {h: i for i, h in enumerate(ids)}
    cells = [
        (at[str(host_id)], int(pnode), int(free))
        for host_id, pnode, free in session.execute(
            select(
                Pnode.host_id,
                Pnode.index,
                Pnode.memory_mib - Pnode.reserved_mib - Pnode.allocated_mib - Pnode.claimed_mib,
            )
        ).all()
        if str(host_id) in at  # a host registered between the two statements waits its turn
    ]
    key_of: dict[str, int] = {}
    shape = np.array([key_of.setdefault(_norm(s), len(key_of)) for s in slits], dtype=np.int64)
    shapes = [np.array(_parse(k), dtype=np.int64) for k in key_of]
    width = max((s.shape[0] for s in shapes), default=1)
    free_mib = np.zeros((len(ids), width), dtype=np.int64)
    if cells:
        c = np.array(cells, dtype=np.int64)
        free_mib[c[:, 0], c[:, 1]] = np.maximum(c[:, 2], 0)
    squeezable = np.zeros_like(free_mib)
    index = {h: i for i, h in enumerate(ids)}
    for host_id, pnode, mib in session.execute(_SQUEEZABLE).all():
        i = index.get(str(host_id))
        if i is not None and int(mib or 0) > 0:
            squeezable[i, int(pnode)] = int(mib)
    return HostRows(
        ids=ids,
        names=names,
        states=states,
        free_mib=free_mib,
        squeezable_mib=squeezable,
        shape=shape,
        shapes=shapes,
    )


def _norm(slit: str) -> str:
    return slit.replace(" ", "")


def _parse(key: str) -> list[list[int]]:
    out: list[list[int]] = json.loads(key)
    return out


# What squeezing every running, cooperative domain down to its dynamic_min gives back per
# (host, pnode): the engine's squeeze scales every backing cell of a domain alike (shrink), so a
# cell x gives back x * (target - dynamic_min) / target; floored per cell, never more than the
# squeeze really frees (its rounding moves each cell by less than one MiB, floor or ceiling).
_SQUEEZABLE = (
    select(
        Backing.host_id,
        Backing.pnode,
        func.sum(Backing.mib * (Domain.target_mib - Domain.dynamic_min_mib) // Domain.target_mib),
    )
    .join(Domain, Domain.id == Backing.domain_id)
    .where(
        Domain.state == "running",
        Domain.uncooperative.is_(False),
        Domain.target_mib > Domain.dynamic_min_mib,
    )
    .group_by(Backing.host_id, Backing.pnode)
)


def load_protected(
    session: Session,
    selector: Sequence[tuple[str, str]],
    *,
    host_ids: Sequence[str] | None = None,
) -> ProtectedRows:
    """The domains the selector picks (every label must match; empty: every domain) that run on
    a host: two statements, the domains then their vnodes; only on ``host_ids`` when given.
    Virtual SLITs are read as text and parsed once per distinct one (a cluster has few)."""
    picked = select(Domain.id).where(
        Domain.host_id.is_not(None), Domain.state.in_(PROTECTABLE_STATES)
    )
    for key, value in selector:
        picked = picked.where(Domain.labels[key].as_string() == value)
    if host_ids is not None:
        picked = picked.where(Domain.host_id.in_(list(host_ids)))
    ids = picked.subquery()
    slit_text = cast(Domain.distances, Text)
    postgres = session.get_bind().dialect.name == "postgresql"
    # On PostgreSQL each domain carries the digest of its SLIT and each distinct SLIT is read
    # once (a 16-vnode SLIT is a kilobyte: 200,000 of them would be most of the transfer), and
    # its vnodes come as two arrays per domain rather than a row per vnode.
    slit_key = func.md5(slit_text) if postgres else slit_text
    doms = session.execute(
        select(Domain.id, Domain.name, Domain.host_id, slit_key)
        .where(Domain.id.in_(select(ids.c.id)))
        .order_by(Domain.id)
    ).all()
    texts: dict[str, str] = {}
    if postgres:
        texts = {
            str(k): str(t)
            for k, t in session.execute(
                select(slit_key, slit_text).where(Domain.id.in_(select(ids.c.id))).distinct()
            ).all()
        }
    out = ProtectedRows(ids=[], names=[], host_ids=[], restart_mib=[], vcpu_count=[], distances=[])
    parsed: dict[str, list[list[int]]] = {}
    at: dict[str, int] = {}
    for dom_id, name, host_id, dist in doms:
        at[str(dom_id)] = len(out.ids)
        out.ids.append(str(dom_id))
        out.names.append(str(name))
        out.host_ids.append(str(host_id))
        k = str(dist)
        if k not in parsed:
            parsed[k] = json.loads(texts.get(k, k))
        out.distances.append(parsed[k])
        out.restart_mib.append([])
        out.vcpu_count.append([])
    if postgres:
        for dom_id, targets, vcpus in session.execute(
            select(
                Vnode.domain_id,
                func.array_agg(aggregate_order_by(Vnode.target_mib, Vnode.index)),
                func.array_agg(aggregate_order_by(Vnode.vcpu_count, Vnode.index)),
            )
            .where(Vnode.domain_id.in_(select(ids.c.id)))
            .group_by(Vnode.domain_id)
        ).all():
            i = at.get(str(dom_id))
            if i is not None:
                out.restart_mib[i] = [int(t) for t in targets]
                out.vcpu_count[i] = [int(c) for c in vcpus]
        return out
    for dom_id, target, n_vcpus in session.execute(
        select(Vnode.domain_id, Vnode.target_mib, Vnode.vcpu_count)
        .where(Vnode.domain_id.in_(select(ids.c.id)))
        .order_by(Vnode.domain_id, Vnode.index)
    ).all():
        i = at.get(str(dom_id))
        if i is not None:
            out.restart_mib[i].append(int(target))
            out.vcpu_count[i].append(int(n_vcpus))
    return out


def domain_states(session: Session, domain_ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    """domain id -> (state, host id) for the domains that still exist."""
    if not domain_ids:
        return {}
    rows = session.execute(
        select(Domain.id, Domain.state, Domain.host_id).where(Domain.id.in_(list(domain_ids)))
    ).all()
    return {str(d): (str(s), None if h is None else str(h)) for d, s, h in rows}
