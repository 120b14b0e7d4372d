"""Does one domain fit on one host: every vnode (item) on one pnode (bin), within the bins'
free MiB and, when the guest has one, within its distortion limit.

Two tools. ``greedy_fit_many`` answers for many hosts of one topology at once (best fit
decreasing, then worst fit decreasing for the rows it failed): when it says yes the mapping it
returns is the proof. ``search_fit`` is complete: a depth-first search over items, largest first,
that answers FIT, NOFIT or UNKNOWN (its node budget ran out), so a "no" is only ever claimed
after every mapping was excluded. Capacity-only searches try one bin per distinct free value
(bins with equal room are interchangeable when only capacity matters) and cut a branch when the
items left exceed the room of the bins that can still take the smallest of them. With a
distortion limit the partial distortion (a sum of non-negative terms) must stay within it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

DISTORTION_TOL = 1e-9
"""Slack when comparing a distortion with a limit (sums of float products)."""


class Fit(IntEnum):
    NOFIT = 0
    FIT = 1
    UNKNOWN = 2


@dataclass(frozen=True, kw_only=True, eq=False)
class Distortion:
    """``place``'s distortion of a guest on one topology: sum of w[u, v] * |vd[u, v] -
    pd[m_u, m_v]| with w = outer(vCPUs, MiB) / (sum vCPUs * sum MiB)."""

    w: FloatArray
    vd: FloatArray
    pd: FloatArray
    limit: float

    def of(self, mapping: IntArray) -> float:
        dm = self.pd[mapping[:, None], mapping[None, :]]
        return float((self.w * np.abs(self.vd - dm)).sum())


def weights(restart_mib: IntArray, vcpu_count: IntArray) -> FloatArray:
    """``place``'s distortion weights for a guest (zero when it has no vCPUs or no memory)."""
    den = float(vcpu_count.sum()) * float(restart_mib.sum())
    if den <= 0:
        return np.zeros((restart_mib.shape[0],) * 2)
    out: FloatArray = np.outer(vcpu_count.astype(float), restart_mib.astype(float)) / den
    return out


# --------------------------------------------------------------------------- many hosts at once


def _greedy(
    items: IntArray, order: IntArray, rem: IntArray, best: bool
) -> tuple[BoolArray, IntArray]:
    r = rem.copy()
    m, v = r.shape[0], items.shape[0]
    mapping = np.zeros((m, v), dtype=np.int64)
    ok = np.ones(m, dtype=bool)
    rows = np.arange(m)
    for i in order.tolist():
        a = int(items[i])
        fits = r >= a
        if best:
            p = np.argmin(np.where(fits, r, np.iinfo(np.int64).max), axis=1)
        else:
            p = np.argmax(np.where(fits, r, -1), axis=1)
        ok &= fits[rows, p]
        r[rows, p] -= a
        mapping[:, i] = p
    return ok, mapping


def _greedy_batch(items: IntArray, rem: IntArray, best: bool) -> tuple[BoolArray, IntArray]:
    """``_greedy`` for C item lists (C, K), sorted decreasing, on C host batches (C, M, B)."""
    r = rem.copy()
    c, m, _ = r.shape
    k = items.shape[1]
    mapping = np.zeros((c, m, k), dtype=np.int64)
    ok = np.ones((c, m), dtype=bool)
    ci, mi = np.ogrid[:c, :m]
    for i in range(k):
        a = items[:, i][:, None, None]
        fits = r >= a
        if best:
            p = np.argmin(np.where(fits, r, np.iinfo(np.int64).max), axis=2)
        else:
            p = np.argmax(np.where(fits, r, -1), axis=2)
        ok &= fits[ci, mi, p]
        r[ci, mi, p] -= items[:, i][:, None]
        mapping[:, :, i] = p
    return ok, mapping


def greedy_fit_batch(items: IntArray, rem: IntArray) -> tuple[BoolArray, IntArray]:
    """``greedy_fit_many`` for C classes at once: ``items`` (C, K) each sorted decreasing
    (padded with 0), ``rem`` (C, M, B); returns (C, M) and (C, M, K)."""
    ok, mapping = _greedy_batch(items, rem, best=True)
    if not ok.all():
        ok2, map2 = _greedy_batch(items, rem, best=False)
        mapping = np.where(ok[:, :, None], mapping, map2)
        ok |= ok2
    return ok, mapping


def greedy_fit_many(items: IntArray, rem: IntArray) -> tuple[BoolArray, IntArray]:
    """Per row of ``rem`` (M, B): whether a greedy packing of ``items`` fits, and its mapping
    (M, V) item -> bin. Best fit decreasing first (tight hosts), worst fit decreasing for the
    rows it failed (it keeps room where best fit fragments)."""
    if rem.shape[0] == 0 or rem.shape[1] == 0:
        return np.zeros(rem.shape[0], dtype=bool), np.zeros(
            (rem.shape[0], items.shape[0]), np.int64
        )
    order = np.argsort(-items, kind="stable")
    ok, mapping = _greedy(items, order, rem, best=True)
    bad = np.flatnonzero(~ok)
    if bad.size:
        ok2, map2 = _greedy(items, order, rem[bad], best=False)
        ok[bad], mapping[bad] = ok2, map2
    return ok, mapping


def loads(items: IntArray, mapping: IntArray, n_bins: int) -> IntArray:
    """(M, B) MiB per bin of M mappings (M, V) of the same items."""
    m = mapping.shape[0]
    flat = (np.arange(m)[:, None] * n_bins + mapping).ravel()
    w = np.broadcast_to(items, mapping.shape).ravel()
    out: IntArray = np.bincount(flat, weights=w, minlength=m * n_bins).astype(np.int64)
    return out.reshape(m, n_bins)


# --------------------------------------------------------------------------- complete search


class _OutOfBudget(Exception):
    pass


@dataclass(kw_only=True)
class _Counter:
    budget: int
    nodes: int = 0

    def tick(self) -> None:
        self.nodes += 1
        if self.nodes > self.budget:
            raise _OutOfBudget


def _pack(sizes: list[int], rem: list[int], c: _Counter) -> list[int] | None:
    """Capacity-only: a bin per size (sizes sorted decreasing), or None when none exists."""
    n, nb = len(sizes), len(rem)
    suffix = [0] * (n + 1)
    for k in range(n - 1, -1, -1):
        suffix[k] = suffix[k + 1] + sizes[k]
    smallest = sizes[-1] if n else 0
    assign = [0] * n

    def dfs(k: int) -> bool:
        if k == n:
            return True
        c.tick()
        if sum(r for r in rem if r >= smallest) < suffix[k]:
            return False
        a = sizes[k]
        seen: set[int] = set()
        for p in sorted(range(nb), key=rem.__getitem__):
            r = rem[p]
            if r < a or r in seen:
                continue
            seen.add(r)
            rem[p] = r - a
            assign[k] = p
            if dfs(k + 1):
                return True
            rem[p] = r
        return False

    return assign if dfs(0) else None


def _pack_limited(items: IntArray, rem: IntArray, dist: Distortion, c: _Counter) -> IntArray | None:
    """With a distortion limit: vnodes largest first, pnodes cheapest first; a branch is cut as
    soon as its partial distortion (non-negative terms) exceeds the limit."""
    v = items.shape[0]
    order = np.argsort(-items, kind="stable").tolist()
    m = np.full(v, -1, dtype=np.int64)
    free = rem.astype(np.int64).copy()
    w, vd, pd = dist.w, dist.vd, dist.pd
    self_cost = np.abs(vd[np.arange(v), np.arange(v)][:, None] - np.diagonal(pd)[None, :])
    self_cost = self_cost * np.diagonal(w)[:, None]
    limit = dist.limit + DISTORTION_TOL

    def dfs(k: int, cur: float) -> bool:
        if k == v:
            return True
        c.tick()
        a = order[k]
        done = np.array(order[:k], dtype=np.int64)
        mu = m[done]
        delta = self_cost[a].copy()
        if k:
            delta += (w[a, done][None, :] * np.abs(vd[a, done][None, :] - pd[:, mu])).sum(axis=1)
            delta += (w[done, a][None, :] * np.abs(vd[done, a][None, :] - pd[mu, :].T)).sum(axis=1)
        need = int(items[a])
        for p in np.argsort(delta, kind="stable").tolist():
            if free[p] < need or cur + delta[p] > limit:
                continue
            free[p] -= need
            m[a] = p
            if dfs(k + 1, cur + float(delta[p])):
                return True
            free[p] += need
            m[a] = -1
        return False

    return m if dfs(0, 0.0) else None


def search_fit(
    items: IntArray, rem: IntArray, *, budget: int, dist: Distortion | None = None
) -> tuple[Fit, IntArray | None, int]:
    """Complete search for a mapping item -> bin of ``items`` (V,) into ``rem`` (B,).

    Returns the answer, the mapping when FIT, and the nodes spent (at most ``budget``)."""
    v, nb = items.shape[0], rem.shape[0]
    if (
        nb == 0
        or int(items.sum()) > int(np.maximum(rem, 0).sum())
        or int(items.max()) > int(rem.max())
    ):
        return Fit.NOFIT, None, 0
    c = _Counter(budget=budget)
    try:
        if dist is not None:
            found = _pack_limited(items, rem, dist, c)
            return (Fit.FIT, found, c.nodes) if found is not None else (Fit.NOFIT, None, c.nodes)
        order = np.argsort(-items, kind="stable")
        got = _pack([int(x) for x in items[order]], [int(x) for x in rem], c)
    except _OutOfBudget:
        return Fit.UNKNOWN, None, c.nodes
    if got is None:
        return Fit.NOFIT, None, c.nodes
    mapping = np.empty(v, dtype=np.int64)
    mapping[order] = got
    return Fit.FIT, mapping, c.nodes
