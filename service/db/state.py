"""Load one host's whole state as arrays in a fixed number of queries, whatever its size.

Six statements: the host row (locked when writing) and its pnodes, the domains on it and their
vnodes, their backing rows, and the live claims. Everything the engine needs is then numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session, selectinload

from service.db.base import utcnow
from service.db.models import Backing, Claim, Domain, Host
from service.engine.accounting import charge_mib

I64 = NDArray[np.int64]


@dataclass
class HostState:
    host: Host
    domains: list[Domain]
    backing: dict[str, I64]  # domain id -> (V, P)
    claimed_mib: I64  # (P,)
    capacity_mib: I64 = field(init=False)
    cpus: I64 = field(init=False)
    pdist: I64 = field(init=False)

    def __post_init__(self) -> None:
        self.capacity_mib = np.array([p.capacity_mib for p in self.host.pnodes], dtype=np.int64)
        self.cpus = np.array([p.cpus for p in self.host.pnodes], dtype=np.int64)
        self.pdist = np.array(self.host.distances, dtype=np.int64)

    @property
    def n_pnodes(self) -> int:
        return int(self.capacity_mib.shape[0])

    def domain(self, domain_id: str) -> Domain | None:
        return next((d for d in self.domains if d.id == domain_id), None)

    def charges(self) -> dict[str, I64]:
        """Per-domain (V, P) charges: backing, or the reported actual size when larger."""
        if not self.domains:
            return {}
        vmax = max(len(d.vnodes) for d in self.domains)
        n, p = len(self.domains), self.n_pnodes
        x = np.zeros((n, vmax, p), dtype=np.int64)
        actual = np.full((n, vmax), -1, dtype=np.int64)
        home = np.zeros((n, vmax), dtype=np.int64)
        for i, d in enumerate(self.domains):
            k = len(d.vnodes)
            x[i, :k] = self.backing.get(d.id, np.zeros((k, p), dtype=np.int64))
            actual[i, :k] = [-1 if vn.actual_mib is None else vn.actual_mib for vn in d.vnodes]
            home[i, :k] = [vn.home_pnode or 0 for vn in d.vnodes]
        c = charge_mib(x, actual, home)
        return {d.id: c[i, : len(d.vnodes)] for i, d in enumerate(self.domains)}

    def allocated_mib(self, charges: dict[str, I64] | None = None) -> I64:
        charges = self.charges() if charges is None else charges
        total = np.zeros(self.n_pnodes, dtype=np.int64)
        for c in charges.values():
            total += c.sum(axis=0)
        return total

    def headroom_mib(self, excluding: str | None = None) -> I64:
        """What one domain may hold per pnode: capacity minus claims and everyone else."""
        charges = self.charges()
        others = {k: v for k, v in charges.items() if k != excluding}
        out: I64 = self.capacity_mib - self.claimed_mib - self.allocated_mib(others)
        return out

    def load_vcpus(self, excluding: str | None = None) -> I64:
        load = np.zeros(self.n_pnodes, dtype=np.int64)
        for d in self.domains:
            if d.id == excluding:
                continue
            for vn in d.vnodes:
                if vn.home_pnode is not None:
                    load[vn.home_pnode] += vn.vcpu_count
        return load


def load_host_state(session: Session, host_id: str, *, lock: bool) -> HostState | None:
    stmt = select(Host).where(Host.id == host_id).options(selectinload(Host.pnodes))
    if lock:
        stmt = stmt.with_for_update(of=Host)
    host = session.scalars(stmt).first()
    if host is None:
        return None
    # Unlocked (read-only) callers run each statement on its own READ COMMITTED snapshot: a
    # domain deleted between the two statements arrives without vnodes. It no longer exists.
    domains = [
        d
        for d in session.scalars(
            select(Domain)
            .where(Domain.host_id == host_id)
            .options(selectinload(Domain.vnodes))
            .order_by(Domain.created_at, Domain.id)
        ).all()
        if d.vnodes
    ]
    p = len(host.pnodes)
    sizes = {d.id: len(d.vnodes) for d in domains}
    backing = {d: np.zeros((k, p), dtype=np.int64) for d, k in sizes.items()}
    for row in session.execute(
        select(Backing.domain_id, Backing.vnode, Backing.pnode, Backing.mib).where(
            Backing.host_id == host_id
        )
    ).all():
        if row.domain_id in backing:
            backing[row.domain_id][row.vnode, row.pnode] = row.mib
    claimed = np.zeros(p, dtype=np.int64)
    for pnode, mib in session.execute(
        select(Claim.pnode, func.sum(Claim.mib))
        .where(Claim.host_id == host_id, Claim.expires_at > utcnow())
        .group_by(Claim.pnode)
    ).all():
        claimed[pnode] = int(mib)
    return HostState(host=host, domains=domains, backing=backing, claimed_mib=claimed)


def write_backing(session: Session, domain_id: str, host_id: str, x: I64) -> None:
    """Replace a domain's backing rows (two statements, however many vnodes and pnodes)."""
    session.execute(delete(Backing).where(Backing.domain_id == domain_id))
    v_idx, p_idx = np.nonzero(x)
    rows = [
        {
            "domain_id": domain_id,
            "vnode": int(v),
            "host_id": host_id,
            "pnode": int(p),
            "mib": int(x[v, p]),
        }
        for v, p in zip(v_idx.tolist(), p_idx.tolist(), strict=True)
    ]
    if rows:
        session.execute(insert(Backing), rows)


def write_accounting(state: HostState) -> None:
    """Materialize allocated and claimed MiB on the pnode rows (the CHECK constraint guards)."""
    allocated = state.allocated_mib()
    for pnode, alloc, claimed in zip(
        state.host.pnodes, allocated.tolist(), state.claimed_mib.tolist(), strict=True
    ):
        if pnode.allocated_mib != alloc:
            pnode.allocated_mib = alloc
        if pnode.claimed_mib != claimed:
            pnode.claimed_mib = claimed


def domains_of(states: Sequence[HostState]) -> list[Domain]:
    return [d for s in states for d in s.domains]
