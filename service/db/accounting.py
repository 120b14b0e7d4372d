"""A host's memory accounting as arrays: what the engine reads and what `apply` checks.

Two scopes, said explicitly: a whole host (every domain on it loaded as rows) or one domain's
write (that domain as rows, every other domain folded into per-pnode sums, `others`), so a
retarget costs the same on a host with one domain or five hundred.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import ColumnElement, or_

from service.db.models import Claim, Domain, Host
from service.engine.accounting import charge_mib
from service.errors import Infeasible

I64 = NDArray[np.int64]


@dataclass(kw_only=True)
class OtherDomains:
    """The host's domains not loaded as rows, as per-pnode sums."""

    allocated_mib: I64  # (P,) their charges
    load_vcpus: I64  # (P,) their vCPUs by home pnode


@dataclass(frozen=True, kw_only=True)
class DomainArrays:
    """Domains as arrays padded to the widest: slot (i, v) is vnode v of domain i; slots past a
    domain's vnodes hold zeros (and -1, "not reported", for the actual size)."""

    backing_mib: I64  # (N, V, P)
    size_mib: I64  # (N, V)
    home: I64  # (N, V) home pnode
    actual_mib: I64  # (N, V) the guest's report, -1 when none
    vcpu_count: I64  # (N, V)
    vnode_count: I64  # (N,)


@dataclass(kw_only=True)
class HostAccounting:
    """A host, the domains loaded as rows (with their `backing`), and the live claims.

    `others` is None when `domains` are all of the host's domains; otherwise it holds the rest.
    """

    host: Host
    domains: list[Domain]
    backing: dict[str, I64]  # domain id -> (V, P) MiB
    claimed_mib: I64  # (P,)
    others: OtherDomains | None = None
    capacity_mib: I64 = field(init=False)
    cpus: I64 = field(init=False)
    pdist: I64 = field(init=False)
    # Set by `keep_arrays`: the arrays built once and kept in step by `absorbed`, the domains by
    # id and the vCPU load (None: built from the rows on every call).
    _kept: DomainArrays | None = field(default=None, init=False, repr=False)
    _rows: dict[str, int] | None = field(default=None, init=False, repr=False)
    _load: I64 | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.capacity_mib = np.array([p.capacity_mib for p in self.host.pnodes], dtype=np.int64)
        self.cpus = np.array([p.cpus for p in self.host.pnodes], dtype=np.int64)
        self.pdist = np.array(self.host.distances, dtype=np.int64)

    @property
    def n_pnodes(self) -> int:
        return int(self.capacity_mib.shape[0])

    def domain(self, domain_id: str) -> Domain | None:
        if self._rows is not None:
            i = self._rows.get(domain_id)
            return None if i is None else self.domains[i]
        return next((d for d in self.domains if d.id == domain_id), None)

    def keep_arrays(self) -> None:
        """Build the arrays once and keep them in step with what `absorb` writes, for a caller
        that changes the rows only through `apply` (the agent's report): rebuilt from the ORM
        rows' attributes, they were a fifth of a report's CPU, four times over. Not for callers
        that add, remove or move domains by hand (a migration, a create)."""
        self._rows = {d.id: i for i, d in enumerate(self.domains)}
        self._kept = self._build_arrays()
        self._load = self._vcpu_load(None)

    def absorbed(
        self, backing: Mapping[str, I64], actual_mib: Mapping[str, Mapping[int, int | None]]
    ) -> None:
        """Kept arrays brought up to date with new backing and reported sizes (`absorb`); a
        domain they do not hold drops them (then rebuilt on every call, as without keeping)."""
        kept, rows = self._kept, self._rows
        if kept is None or rows is None:
            return
        shapes = {d: (int(kept.vnode_count[i]), self.n_pnodes) for d, i in rows.items()}
        if any(shapes.get(d) != x.shape for d, x in backing.items()) or any(
            d not in shapes or not set(r) <= set(range(shapes[d][0])) for d, r in actual_mib.items()
        ):
            self._kept = self._rows = self._load = None
            return
        for domain_id, x in backing.items():
            kept.backing_mib[rows[domain_id], : x.shape[0]] = x
        for domain_id, reported in actual_mib.items():
            i = rows[domain_id]
            for v, mib in reported.items():
                kept.actual_mib[i, v] = -1 if mib is None else mib

    def arrays(self) -> DomainArrays:
        """The loaded domains as arrays padded to the widest (the engine's shapes)."""
        return self._build_arrays() if self._kept is None else self._kept

    def _build_arrays(self) -> DomainArrays:
        n, p = len(self.domains), self.n_pnodes
        vmax = max((len(d.vnodes) for d in self.domains), default=1)
        out = DomainArrays(
            backing_mib=np.zeros((n, vmax, p), dtype=np.int64),
            size_mib=np.zeros((n, vmax), dtype=np.int64),
            home=np.zeros((n, vmax), dtype=np.int64),
            actual_mib=np.full((n, vmax), -1, dtype=np.int64),
            vcpu_count=np.zeros((n, vmax), dtype=np.int64),
            vnode_count=np.array([len(d.vnodes) for d in self.domains], dtype=np.int64),
        )
        for i, d in enumerate(self.domains):
            k = len(d.vnodes)
            out.backing_mib[i, :k] = self.backing.get(d.id, np.zeros((k, p), dtype=np.int64))
            for vn in d.vnodes:
                out.size_mib[i, vn.index] = vn.size_mib
                out.home[i, vn.index] = vn.home_pnode or 0
                out.vcpu_count[i, vn.index] = vn.vcpu_count
                if vn.actual_mib is not None:
                    out.actual_mib[i, vn.index] = vn.actual_mib
        return out

    def charges(self) -> dict[str, I64]:
        """Per-domain (V, P) charges: backing, or the reported actual size when larger."""
        if not self.domains:
            return {}
        a = self.arrays()
        c = charge_mib(backing_mib=a.backing_mib, actual_mib=a.actual_mib, home=a.home)
        return {d.id: c[i, : len(d.vnodes)] for i, d in enumerate(self.domains)}

    def allocated_mib(self, charges: dict[str, I64] | None = None) -> I64:
        total = self._zeros() if self.others is None else self.others.allocated_mib.copy()
        if charges is None and self.domains:
            a = self.arrays()  # padded slots charge nothing: sum the whole (N, V, P) at once
            c = charge_mib(backing_mib=a.backing_mib, actual_mib=a.actual_mib, home=a.home)
            total += c.sum(axis=(0, 1))
            return total
        for c in (charges or {}).values():
            total += c.sum(axis=0)
        return total

    def headroom_mib(self, excluding: str | None = None) -> I64:
        """What one domain may hold per pnode: capacity minus claims and everyone else."""
        others = {k: v for k, v in self.charges().items() if k != excluding}
        out: I64 = self.capacity_mib - self.claimed_mib - self.allocated_mib(others)
        return out

    def load_vcpus(self, excluding: str | None = None) -> I64:
        if excluding is None and self._load is not None:
            return self._load.copy()  # homes never move through `absorb`
        return self._vcpu_load(excluding)

    def _vcpu_load(self, excluding: str | None) -> I64:
        load = self._zeros() if self.others is None else self.others.load_vcpus.copy()
        for d in self.domains:
            if d.id == excluding:
                continue
            for vn in d.vnodes:
                if vn.home_pnode is not None:
                    load[vn.home_pnode] += vn.vcpu_count
        return load

    def check_fits(self) -> I64:
        """Refuse when charges (including memory a guest has not yet released) would
        overcommit; returns the per-pnode allocation it checked."""
        allocated = self.allocated_mib()
        free = self.capacity_mib - self.claimed_mib - allocated
        short = np.flatnonzero(free < 0)
        if short.size:
            p = int(short[0])
            raise Infeasible(
                f"pnode {p} of host {self.host.name} would be overcommitted by {-int(free[p])} "
                "MiB (a guest has not yet released memory it was asked to give back)"
            )
        return allocated

    def _zeros(self) -> I64:
        return np.zeros(self.n_pnodes, dtype=np.int64)


def live_claim(now: Any) -> ColumnElement[bool]:
    """A claim counts while it is held (no expiry: its migration is past `planned`) or leased."""
    return or_(Claim.expires_at.is_(None), Claim.expires_at > now)
