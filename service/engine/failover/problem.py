"""The planner's working form of its inputs: bins, items and the domains of every host.

Without ``allow_spread`` a host's bins are its pnodes and a guest's items its vnodes: every vnode
must sit on one pnode. With ``allow_spread`` a vnode's memory may be spread over the pnodes of its
host, so only a host's total matters: one bin per host (its free MiB summed) and one item per
guest (its restart MiB summed); a distortion limit then constrains where the vCPUs are homed, which
does not depend on memory, so it is decided once per guest and topology (``home_ok``).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from service.engine.failover.fit import Distortion, Fit, search_fit, weights
from service.engine.failover.inputs import FailoverHosts, GuestShape, ProtectedDomains

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True, kw_only=True, eq=False)
class Guest:
    """A guest shape as the planner uses it: ``items`` are what must each sit in one bin."""

    shape: GuestShape
    items: IntArray
    total: int

    @functools.cached_property
    def w(self) -> FloatArray:
        """Distortion weights (only guests with a limit need them while searching)."""
        return weights(self.shape.restart_mib, self.shape.vcpu_count)

    @property
    def limit(self) -> float | None:
        return self.shape.max_distortion

    @property
    def n_vnodes(self) -> int:
        return int(self.shape.restart_mib.shape[0])


def make_guest(g: GuestShape, spread: bool) -> Guest:
    dem = g.restart_mib
    items = np.array([int(dem.sum())], dtype=np.int64) if spread else dem
    return Guest(shape=g, items=items, total=int(dem.sum()))


@dataclass(kw_only=True, eq=False)
class Problem:
    """Hosts as bins (``now``: free now; ``full``: free once squeezed to dynamic_min), the
    protected domains grouped by host (``host_start``/``host_doms``, CSR) and search budgets."""

    hosts: FailoverHosts
    spread: bool
    n_bins: IntArray
    now: IntArray
    full: IntArray
    eligible: BoolArray
    shape: IntArray
    shapes: tuple[IntArray, ...]
    dom_host: IntArray
    dom_guest: IntArray
    guests: tuple[Guest, ...]
    dom_total: IntArray
    host_start: IntArray
    host_doms: IntArray
    fit_budget: int
    home_cache: dict[tuple[int, int], tuple[Fit, IntArray | None]] = field(default_factory=dict)
    alone_cache: dict[int, tuple[IntArray, bool]] = field(default_factory=dict)

    @property
    def n_hosts(self) -> int:
        return int(self.shape.shape[0])

    @property
    def n_domains(self) -> int:
        return int(self.dom_host.shape[0])

    @functools.cached_property
    def now_eligible(self) -> IntArray:
        """(H,) MiB free now on each host that may receive restarts (0 on the others)."""
        out: IntArray = np.where(self.eligible, self.now.sum(axis=1), 0).astype(np.int64)
        return out

    @functools.cached_property
    def roomiest(self) -> tuple[IntArray, ...]:
        """Per topology, its eligible hosts by decreasing MiB they can free."""
        tot = self.full.sum(axis=1)
        out = []
        for s in range(len(self.shapes)):
            hosts = np.flatnonzero((self.shape == s) & self.eligible)
            out.append(hosts[np.argsort(-tot[hosts], kind="stable")].astype(np.int64))
        return tuple(out)

    @functools.cached_property
    def largest_bin(self) -> int:
        """The most any one bin (pnode) of an eligible host can free: no item beyond it fits."""
        return int(self.full[self.eligible].max(initial=0))

    @functools.cached_property
    def largest_host(self) -> int:
        """The most any eligible host can free in total."""
        return int(self.full[self.eligible].sum(axis=1).max(initial=0))

    def may_fit(self, g: int) -> bool:
        """False when guest ``g`` certainly fits no eligible host (an item or its total too
        large): the scans skip it."""
        guest = self.guests[g]
        return int(guest.items.max()) <= self.largest_bin and guest.total <= self.largest_host

    def could_hold(self, g: int) -> BoolArray:
        """(H,) hosts that pass the necessary conditions for guest ``g`` alone: room enough in
        total, and a bin as large as its largest item (the only hosts a scan must look at)."""
        guest = self.guests[g]
        out: BoolArray = (self.full_total >= guest.total) & (
            self.full_bin_max >= int(guest.items.max())
        )
        return out

    @functools.cached_property
    def full_bin_max(self) -> IntArray:
        out: IntArray = self.full.max(axis=1, initial=0)
        return out

    @functools.cached_property
    def full_total(self) -> IntArray:
        out: IntArray = self.full.sum(axis=1)
        return out

    @functools.cached_property
    def guest_vnodes(self) -> IntArray:
        """(G,) vnodes of each guest."""
        return np.array([g.n_vnodes for g in self.guests], dtype=np.int64)

    @functools.cached_property
    def n_items(self) -> IntArray:
        """(G,) items of each guest (vnodes, or 1 with allow_spread)."""
        return np.array([g.items.shape[0] for g in self.guests], dtype=np.int64)

    @functools.cached_property
    def now_eligible_total(self) -> int:
        return int(self.now_eligible.sum())

    def domains_of(self, host: int) -> IntArray:
        out: IntArray = self.host_doms[self.host_start[host] : self.host_start[host + 1]]
        return out

    def distortion(self, guest: int, shape: int) -> Distortion | None:
        """The limit check of ``guest`` on topology ``shape``, or None when it has no limit."""
        g = self.guests[guest]
        if g.limit is None:
            return None
        return Distortion(
            w=g.w,
            vd=g.shape.vdist.astype(np.float64),
            pd=self.shapes[shape].astype(np.float64),
            limit=float(g.limit),
        )

    def home_ok(self, guest: int, shape: int) -> tuple[Fit, IntArray | None]:
        """Whether some mapping of the guest's vnodes on ``shape`` meets its distortion limit,
        capacity aside (decides a spread restart), and that mapping."""
        key = (guest, shape)
        if key not in self.home_cache:
            dist = self.distortion(guest, shape)
            p = self.shapes[shape].shape[0]
            if dist is None or p == 0:
                self.home_cache[key] = (Fit.FIT if p else Fit.NOFIT, None)
            else:
                dem = self.guests[guest].shape.restart_mib
                roomy = np.full(p, int(dem.sum()) + 1, dtype=np.int64)
                ans, m, _ = search_fit(dem, roomy, budget=self.fit_budget, dist=dist)
                self.home_cache[key] = (ans, m)
        return self.home_cache[key]


def make_problem(
    hosts: FailoverHosts, domains: ProtectedDomains, *, spread: bool, fit_budget: int
) -> Problem:
    n_pn = np.array([s.shape[0] for s in hosts.shapes], dtype=np.int64)
    width = int(n_pn.max(initial=0))
    free = np.asarray(hosts.free_mib, dtype=np.int64)[:, :width]
    full = free + np.asarray(hosts.squeezable_mib, dtype=np.int64)[:, :width]
    h = hosts.n_hosts
    n_bins = n_pn[hosts.shape] if h else np.zeros(0, dtype=np.int64)
    if spread:
        now_b, full_b = free.sum(axis=1, keepdims=True), full.sum(axis=1, keepdims=True)
        n_bins = np.minimum(n_bins, 1)
    else:
        now_b, full_b = free, full
    guests = tuple(make_guest(g, spread) for g in domains.guests)
    totals = np.array([g.total for g in guests], dtype=np.int64)
    order = np.argsort(domains.host, kind="stable")
    start = np.searchsorted(domains.host[order], np.arange(h + 1)).astype(np.int64)
    return Problem(
        hosts=hosts,
        spread=spread,
        n_bins=n_bins.astype(np.int64),
        now=now_b,
        full=full_b,
        eligible=np.asarray(hosts.eligible, dtype=bool),
        shape=np.asarray(hosts.shape, dtype=np.int64),
        shapes=tuple(np.asarray(s, dtype=np.int64) for s in hosts.shapes),
        dom_host=np.asarray(domains.host, dtype=np.int64),
        dom_guest=np.asarray(domains.guest, dtype=np.int64),
        guests=guests,
        dom_total=totals[domains.guest] if domains.n_domains else np.zeros(0, np.int64),
        host_start=start,
        host_doms=order.astype(np.int64),
        fit_budget=fit_budget,
    )


def with_host_rows(
    prob: Problem,
    host: int,
    free_mib: IntArray | None,
    squeezable_mib: IntArray | None,
    eligible: bool | None,
) -> Problem:
    """``prob`` after host ``host`` changed (None: unchanged); the arrays are copied."""
    p = int(prob.shapes[int(prob.shape[host])].shape[0])
    free = prob.hosts.free_mib.copy()
    sq = prob.hosts.squeezable_mib.copy()
    if free_mib is not None:
        free[host, :p] = free_mib
    if squeezable_mib is not None:
        sq[host, :p] = squeezable_mib
    elig = prob.eligible.copy()
    if eligible is not None:
        elig[host] = eligible
    hosts = FailoverHosts(
        free_mib=free,
        squeezable_mib=sq,
        eligible=elig,
        shape=prob.hosts.shape,
        shapes=prob.hosts.shapes,
    )
    now, full = prob.now.copy(), prob.full.copy()
    if prob.spread:
        now[host, 0] = free[host, :p].sum()
        full[host, 0] = (free[host, :p] + sq[host, :p]).sum()
    else:
        now[host, :p] = free[host, :p]
        full[host, :p] = free[host, :p] + sq[host, :p]
    out = dataclasses.replace(prob, hosts=hosts, now=now, full=full, eligible=elig, alone_cache={})
    _carry_host_caches(prob, out, host)
    return out


_GUEST_CACHES = ("guest_vnodes", "n_items")
_HOST_CACHES = ("roomiest", "now_eligible", "now_eligible_total", "full_total", "full_bin_max")


def _carry_host_caches(old: Problem, new: Problem, host: int) -> None:
    """Kept per-host figures of ``old`` moved to ``new`` (one host changed), so an admission
    check does not recompute them over every host. The order of ``roomiest`` is only a
    preference, so it is kept while the set of eligible hosts is the same."""
    cached = old.__dict__
    if "full_total" in cached:
        total = old.full_total.copy()
        total[host] = int(new.full[host].sum())
        new.__dict__["full_total"] = total
    if "full_bin_max" in cached:
        top = old.full_bin_max.copy()
        top[host] = int(new.full[host].max(initial=0))
        new.__dict__["full_bin_max"] = top
    if "roomiest" in cached and bool(old.eligible[host]) == bool(new.eligible[host]):
        new.__dict__["roomiest"] = old.roomiest
    for name in _GUEST_CACHES:
        if name in cached:
            new.__dict__[name] = cached[name]


def _carry_all_caches(old: Problem, new: Problem) -> None:
    """Every kept per-host figure of ``old`` moved to ``new`` (only domains changed)."""
    for name in (*_HOST_CACHES, "largest_bin", "largest_host"):
        if name in old.__dict__:
            new.__dict__[name] = old.__dict__[name]


def with_domain(prob: Problem, domain: int | None, host: int, guest: GuestShape | None) -> Problem:
    """``prob`` after a protected domain was added (``domain`` None: it gets the next index),
    changed (its host or its guest shape) or removed (``guest`` None)."""
    dom_host, dom_guest, dom_total = prob.dom_host, prob.dom_guest, prob.dom_total
    guests = prob.guests
    start, doms = prob.host_start, prob.host_doms
    if domain is not None:  # out of its host's segment first (if it is protected now)
        old = int(dom_host[domain])
        at = np.flatnonzero(doms[start[old] : start[old + 1]] == domain)
        if at.size:
            doms = np.delete(doms, int(at[0]) + int(start[old]))
            start = start.copy()
            start[old + 1 :] -= 1
    # the searches' caches are keyed by guest index: a copy each, so that two changes made
    # from the same problem (an admission kept apart from another) never share a new index
    home, alone = dict(prob.home_cache), dict(prob.alone_cache)
    if guest is None:
        out = dataclasses.replace(
            prob, host_start=start, host_doms=doms, home_cache=home, alone_cache=alone
        )
        _carry_all_caches(prob, out)
        return out
    g = make_guest(guest, prob.spread)
    gi = len(guests)
    guests = (*guests, g)
    if domain is None:
        domain = int(dom_host.shape[0])
        dom_host = np.append(dom_host, host)
        dom_guest = np.append(dom_guest, gi)
        dom_total = np.append(dom_total, g.total)
    else:
        dom_host, dom_guest, dom_total = dom_host.copy(), dom_guest.copy(), dom_total.copy()
        dom_host[domain], dom_guest[domain], dom_total[domain] = host, gi, g.total
    doms = np.insert(doms, int(start[host + 1]), domain)
    start = start.copy()
    start[host + 1 :] += 1
    out = dataclasses.replace(
        prob,
        dom_host=dom_host,
        dom_guest=dom_guest,
        dom_total=dom_total,
        guests=guests,
        host_start=start,
        host_doms=doms,
        home_cache=home,
        alone_cache=alone,
    )
    _carry_all_caches(prob, out)
    return out
