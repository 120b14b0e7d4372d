"""A host's memory accounting as arrays: what the engine reads and what `apply` checks.

Two scopes, said explicitly: a whole host (every domain on it loaded as rows) or one domain's
write (that domain as rows, every other domain folded into per-pnode sums, `others`), so a
retarget costs the same on a host with one domain or five hundred.
"""

from __future__ import annotations

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
        backing = np.zeros((n, vmax, p), dtype=np.int64)
        actual = np.full((n, vmax), -1, dtype=np.int64)
        home = np.zeros((n, vmax), dtype=np.int64)
        for i, d in enumerate(self.domains):
            k = len(d.vnodes)
            backing[i, :k] = self.backing.get(d.id, np.zeros((k, p), dtype=np.int64))
            actual[i, :k] = [-1 if vn.actual_mib is None else vn.actual_mib for vn in d.vnodes]
            home[i, :k] = [vn.home_pnode or 0 for vn in d.vnodes]
        c = charge_mib(backing, actual, home)
        return {d.id: c[i, : len(d.vnodes)] for i, d in enumerate(self.domains)}

    def allocated_mib(self, charges: dict[str, I64] | None = None) -> I64:
        charges = self.charges() if charges is None else charges
        total = self._zeros() if self.others is None else self.others.allocated_mib.copy()
        for c in charges.values():
            total += c.sum(axis=0)
        return total

    def headroom_mib(self, excluding: str | None = None) -> I64:
        """What one domain may hold per pnode: capacity minus claims and everyone else."""
        others = {k: v for k, v in self.charges().items() if k != excluding}
        out: I64 = self.capacity_mib - self.claimed_mib - self.allocated_mib(others)
        return out

    def load_vcpus(self, excluding: str | None = None) -> I64:
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
