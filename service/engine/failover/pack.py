"""One scenario searched on its own: a greedy restart of its domains, largest first, then,
if some are left over, a complete search for the most domains that can be restarted.

The greedy tries the domain's class candidates first (a candidate the scenario has not touched
yet still holds: its mapping was found on the untouched host) and re-fits the guest itself on a
host the scenario already loaded; failing that, it scans every surviving eligible host with the
guest's own sizes. Capacity is decremented as restarts are placed, so nothing is counted twice.

The complete search (``complete``) first finds, per domain, every survivor it fits alone (a
domain that fits none is certainly stranded, whatever the others do), then runs a depth-first
search over the rest: each domain is restarted on one of its hosts, with every distinct way its
vnodes can load the pnodes there, or left out; a branch is cut when it cannot strand fewer domains
than the best plan found. Hosts in the same state are tried once; when every guest left is
capacity-only, pnodes and hosts are compared by their sorted free MiB (they are interchangeable).
A node budget bounds the work: when it runs out the answer is marked unproven, never guessed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from service.engine.failover.candidates import Candidates
from service.engine.failover.classes import Classes, class_for
from service.engine.failover.fit import (
    DISTORTION_TOL,
    Fit,
    greedy_fit_many,
    search_fit,
)
from service.engine.failover.problem import Problem
from service.engine.failover.sweep import item_loads

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

SCAN_LIMITED = 256
"""Hosts the greedy searches one by one for a guest with a distortion limit."""

ENTRY_CHUNK = 32
"""Candidate entries checked at once (the first ones usually fit)."""

SCAN_FIRST = 256
"""Roomiest hosts per topology the greedy scans before all the others."""


class OutOfBudget(Exception):
    """The complete search spent its node budget."""


@dataclass(kw_only=True)
class Budget:
    nodes: int
    spent: int = 0

    def tick(self, n: int = 1) -> None:
        self.spent += n
        if self.spent > self.nodes:
            raise OutOfBudget

    @property
    def left(self) -> int:
        return max(self.nodes - self.spent, 0)


@dataclass(kw_only=True)
class Residual:
    """Free MiB per bin of the hosts a scenario has loaded (the others are untouched)."""

    prob: Problem
    full: dict[int, IntArray] = field(default_factory=dict)
    now: dict[int, IntArray] = field(default_factory=dict)

    def of(self, h: int) -> IntArray:
        return self.full[h] if h in self.full else self.prob.full[h]

    def now_of(self, h: int) -> IntArray:
        return self.now[h] if h in self.now else self.prob.now[h]

    def take(self, h: int, load: IntArray) -> None:
        self.full[h] = self.of(h) - load
        self.now[h] = (self.now[h] if h in self.now else self.prob.now[h]) - load

    def give(self, h: int, load: IntArray) -> None:
        self.full[h] = self.full[h] + load
        self.now[h] = self.now[h] + load


@dataclass(frozen=True, kw_only=True, eq=False)
class ScenarioPlan:
    """A scenario's restarts: ``placed`` domain -> (host, guest item -> bin); ``unplaced`` in
    the scenario's order; ``proven``: the plan strands as few domains as possible (all placed, or
    the complete search finished); ``nodes``: what its complete search spent."""

    failed: tuple[int, ...]
    placed: dict[int, tuple[int, IntArray]]
    unplaced: tuple[int, ...]
    proven: bool
    squeeze_mib: int
    free_after_mib: int
    nodes: int = 0


def alive_mask(prob: Problem, failed: tuple[int, ...]) -> BoolArray:
    alive = prob.eligible.copy()
    alive[list(failed)] = False
    return alive


def scenario_domains(prob: Problem, failed: tuple[int, ...]) -> list[int]:
    doms = np.concatenate([prob.domains_of(g) for g in failed]) if failed else np.zeros(0, np.int64)
    order = np.lexsort((doms, -prob.dom_total[doms]))
    return [int(d) for d in doms[order]]


def load_of(prob: Problem, d: int, mapping: IntArray) -> IntArray:
    items = prob.guests[int(prob.dom_guest[d])].items
    out: IntArray = np.bincount(mapping, weights=items, minlength=prob.full.shape[1]).astype(
        np.int64
    )
    return out


def fit_host(
    prob: Problem, g: int, h: int, rem: IntArray, budget: int
) -> tuple[Fit, IntArray | None]:
    """The guest alone on host ``h`` with ``rem`` free per bin (complete within ``budget``)."""
    guest = prob.guests[g]
    nb, shape = int(prob.n_bins[h]), int(prob.shape[h])
    if nb == 0:
        return Fit.NOFIT, None
    if prob.spread:
        home, _ = prob.home_ok(g, shape)
        if home != Fit.FIT:
            return home, None
        ok = guest.total <= int(rem[0])
        return (Fit.FIT, np.zeros(1, np.int64)) if ok else (Fit.NOFIT, None)
    ans, m, _ = search_fit(guest.items, rem[:nb], budget=budget, dist=prob.distortion(g, shape))
    return ans, m


# --------------------------------------------------------------------------- greedy


def _from_candidates(
    prob: Problem, cls: Classes, cands: Candidates, d: int, alive: BoolArray, res: Residual
) -> tuple[int, IntArray] | None:
    """The first entry of the domain's class list whose mapping, with the guest's own sizes,
    still fits its host now (the scenario's restarts, later changes counted): first without
    squeezing anybody, then squeezing. All entries are checked at once."""
    g = int(prob.dom_guest[d])
    guest = prob.guests[g]
    k = guest.items.shape[0]
    if g < cls.of_guest.shape[0]:
        c, perm = int(cls.of_guest[g]), cls.perm[g]
    elif (found := class_for(cls, guest.items)) is not None and guest.limit is None:
        c, perm = found  # a guest newer than the classes (an admission check's)
    else:
        return None
    entries = np.arange(int(cands.start[c]), int(cands.start[c + 1]))
    entries = entries[alive[cands.host[entries]]]
    touched = list(res.full)
    for squeezing in (False, True):
        for lo in range(0, entries.shape[0], ENTRY_CHUNK):
            e = entries[lo : lo + ENTRY_CHUNK]
            hosts = cands.host[e]
            mg = np.zeros((e.shape[0], cls.perm.shape[1]), dtype=np.int64)
            mg[:, perm] = cands.mapping[e]
            mg = mg[:, :k]
            load = item_loads(np.broadcast_to(guest.items, mg.shape), mg, prob.full.shape[1])
            room = (prob.full if squeezing else prob.now)[hosts]
            for i in np.flatnonzero(np.isin(hosts, touched)).tolist():
                room[i] = (res.of if squeezing else res.now_of)(int(hosts[i]))
            ok = (load <= room).all(axis=1)
            if ok.any():
                i = int(np.argmax(ok))
                return int(hosts[i]), mg[i]
    return None


def _rows(prob: Problem, res: Residual, hosts: IntArray, nb: int) -> tuple[IntArray, IntArray]:
    full = prob.full[hosts, :nb].copy()
    now = prob.now[hosts, :nb].copy()
    for i, h in enumerate(hosts.tolist()):
        if h in res.full:
            full[i], now[i] = res.full[h][:nb], res.now[h][:nb]
    return full, now


def _scan_hosts(
    prob: Problem, d: int, res: Residual, s: int, hosts: IntArray
) -> tuple[int, int, int, IntArray] | None:
    """The best of ``hosts`` (topology ``s``) for domain ``d``: (needs squeeze, -room, host,
    mapping), or None."""
    g = int(prob.dom_guest[d])
    guest = prob.guests[g]
    nb = int(prob.n_bins[hosts[0]])
    full, now = _rows(prob, res, hosts, nb)
    if guest.limit is not None and not prob.spread:
        for i in np.argsort(-full.sum(axis=1), kind="stable")[:SCAN_LIMITED].tolist():
            ans, m = fit_host(prob, g, int(hosts[i]), full[i], prob.fit_budget)
            if ans == Fit.FIT and m is not None:
                sq = int(not (load_of(prob, d, m)[:nb] <= now[i]).all())
                return sq, -int(full[i].sum()), int(hosts[i]), m
        return None
    if prob.spread and prob.home_ok(g, s)[0] != Fit.FIT:
        return None
    for sq, grid in ((0, now), (1, full)):
        ok, m = greedy_fit_many(guest.items, grid)
        if ok.any():
            room = np.where(ok, grid.sum(axis=1), -1)
            i = int(np.argmax(room))
            return sq, -int(room[i]), int(hosts[i]), m[i]
    return None


def _scan(prob: Problem, d: int, alive: BoolArray, res: Residual) -> tuple[int, IntArray] | None:
    """The surviving hosts, the guest's own sizes: a host that fits now, else one that fits
    once squeezed (the one with the most free MiB). The roomiest ``SCAN_FIRST`` hosts of each
    topology are tried first, the others only when none of those fits."""
    g = int(prob.dom_guest[d])
    if not prob.may_fit(g):
        return None
    for first in (True, False):
        best: tuple[int, int, int, IntArray] | None = None
        for s, order in enumerate(prob.roomiest):
            hosts = order[alive[order] & prob.could_hold(g)[order]]
            hosts = hosts[:SCAN_FIRST] if first else hosts[SCAN_FIRST:]
            if hosts.size == 0 or prob.shapes[s].shape[0] == 0:
                continue
            cand = _scan_hosts(prob, d, res, s, hosts)
            if cand is not None and (best is None or cand[:3] < best[:3]):
                best = cand
        if best is not None:
            return best[2], best[3]
    return None


def greedy(
    prob: Problem, cls: Classes, cands: Candidates, failed: tuple[int, ...]
) -> tuple[dict[int, tuple[int, IntArray]], list[int], Residual]:
    alive = alive_mask(prob, failed)
    res = Residual(prob=prob)
    placed: dict[int, tuple[int, IntArray]] = {}
    left: list[int] = []
    for d in scenario_domains(prob, failed):
        got = _from_candidates(prob, cls, cands, d, alive, res) or _scan(prob, d, alive, res)
        if got is None:
            left.append(d)
            continue
        h, m = got
        placed[d] = (h, m)
        res.take(h, load_of(prob, d, m))
    return placed, left, res


# --------------------------------------------------------------------------- complete search


ALONE_SEARCHES = 64
"""Complete per-host searches per guest for the hosts the greedy could not fit (the roomiest
first); hosts beyond stay undecided, which makes a plan that needs them unproven."""


def _alone_all(prob: Problem, g: int) -> tuple[IntArray, bool]:
    """Every eligible host where guest ``g`` fits on its own (its room once squeezed), and
    whether some host stayed undecided. Kept per problem: a scenario only removes hosts."""
    if g in prob.alone_cache:
        return prob.alone_cache[g]
    if not prob.may_fit(g):
        prob.alone_cache[g] = (np.zeros(0, np.int64), False)
        return prob.alone_cache[g]
    guest = prob.guests[g]
    found: list[IntArray] = []
    unknown = False
    left = ALONE_SEARCHES
    for s, hosts in enumerate(prob.roomiest):
        if hosts.size == 0 or prob.shapes[s].shape[0] == 0:
            continue
        full = prob.full[hosts, : int(prob.n_bins[hosts[0]])]
        if prob.spread:
            home = prob.home_ok(g, s)[0]
            unknown |= home == Fit.UNKNOWN
            if home == Fit.FIT:
                found.append(hosts[full[:, 0] >= guest.total])
            continue
        if guest.limit is None:
            ok, _ = greedy_fit_many(guest.items, full)
        else:
            ok = np.zeros(hosts.shape[0], dtype=bool)
        maybe = ~ok & (full.sum(axis=1) >= guest.total) & (full.max(axis=1) >= guest.items.max())
        for i in np.flatnonzero(maybe).tolist():
            if left == 0:
                unknown = True
                break
            left -= 1
            dist = prob.distortion(g, s)
            ans, _, _ = search_fit(guest.items, full[i], budget=prob.fit_budget, dist=dist)
            ok[i] = ans == Fit.FIT
            unknown |= ans == Fit.UNKNOWN
        found.append(hosts[ok])
    out = np.sort(np.concatenate(found)) if found else np.zeros(0, np.int64)
    prob.alone_cache[g] = (out, unknown)
    return out, unknown


def fits_alone(prob: Problem, d: int, alive: BoolArray) -> tuple[list[int], bool]:
    """Every survivor where domain ``d`` fits on its own (complete), and whether some host's
    search was left undecided (then the list may miss hosts)."""
    hosts, unknown = _alone_all(prob, int(prob.dom_guest[d]))
    return hosts[alive[hosts]].tolist(), unknown


def _spread_options(prob: Problem, d: int, rem: IntArray) -> Iterator[IntArray]:
    if int(rem[0]) >= prob.guests[int(prob.dom_guest[d])].total:
        yield np.zeros(1, dtype=np.int64)


def options(
    prob: Problem, d: int, h: int, rem: IntArray, canonical: bool, budget: Budget
) -> list[tuple[IntArray, IntArray]]:
    """Every distinct way domain ``d`` can load host ``h`` given ``rem``: (mapping, load)."""
    if prob.spread:
        return [(m, load_of(prob, d, m)) for m in _spread_options(prob, d, rem)]
    g = int(prob.dom_guest[d])
    guest = prob.guests[g]
    nb = int(prob.n_bins[h])
    dist = prob.distortion(g, int(prob.shape[h]))
    items = guest.items
    order = np.argsort(-items, kind="stable").tolist()
    free = [int(x) for x in rem[:nb]]
    m = [0] * items.shape[0]
    cost = 0.0
    found: dict[tuple[int, ...], list[int]] = {}

    def rec(k: int) -> None:
        nonlocal cost
        budget.tick()
        if k == len(order):
            key = tuple(sorted(free)) if canonical else tuple(free)
            found.setdefault(key, list(m))
            return
        a = order[k]
        need = int(items[a])
        seen: set[int] = set()
        for p in range(nb):
            if free[p] < need or (canonical and free[p] in seen):
                continue
            seen.add(free[p])
            step = 0.0
            if dist is not None:
                m[a] = p
                step = _delta(dist.w, dist.vd, dist.pd, order[: k + 1], m, a)
                if cost + step > dist.limit + DISTORTION_TOL:
                    continue
            free[p] -= need
            m[a] = p
            cost += step
            rec(k + 1)
            cost -= step
            free[p] += need

    rec(0)
    out = []
    for mm in found.values():
        mapping = np.array(mm, dtype=np.int64)
        out.append((mapping, load_of(prob, d, mapping)))
    return out


def _delta(
    w: NDArray[np.float64],
    vd: NDArray[np.float64],
    pd: NDArray[np.float64],
    done: list[int],
    m: list[int],
    a: int,
) -> float:
    """Distortion terms that vnode ``a`` adds with the vnodes ``done`` (which include it)."""
    pa = m[a]
    out = 0.0
    for u in done:
        pu = m[u]
        out += float(w[a, u]) * abs(float(vd[a, u]) - float(pd[pa, pu]))
        if u != a:
            out += float(w[u, a]) * abs(float(vd[u, a]) - float(pd[pu, pa]))
    return out
