"""Hosts where each class fits alone, found once and shared by every scenario.

Per class and per host topology the eligible hosts are scanned in decreasing order of the MiB
they could free (hosts with less than the class needs in total are never looked at), a chunk at a
time, with the vectorized greedy fit (``greedy_fit_many``) against the free memory now and, for
the hosts that need it, against the free memory once squeezed. The scan stops when ``want``
hosts are found or the hosts run out. The list puts hosts that need no squeeze first.

Every entry is a proof (a mapping that fits the host's untouched state); a host missing from the
list may still fit, which is why a scenario that the lists cannot serve is searched again host by
host (``pack``) before anything is claimed about it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.engine.failover.classes import Classes
from service.engine.failover.fit import Fit, greedy_fit_batch, greedy_fit_many, search_fit
from service.engine.failover.problem import Problem

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

DEFAULT_WANT = 256
"""Candidates sought per class: many more than a scenario's domains, so that scenarios spread
their restarts over different hosts (an admission check then touches few scenarios)."""

CHUNK = 256
"""Hosts per topology examined per round of the scan."""

LIMITED_SCAN = 64
"""Hosts per topology searched one by one for a class with a distortion limit."""


@dataclass(frozen=True, kw_only=True, eq=False)
class Candidates:
    """Per class c, entries ``start[c]:start[c+1]``: ``host``, ``mapping`` (class item -> bin,
    padded like the class items) and ``squeeze`` (the fit needs squeezing). ``n_free[c]``: the
    leading entries that fit the free memory of now."""

    start: IntArray
    host: IntArray
    mapping: IntArray
    squeeze: BoolArray
    n_free: IntArray

    def count(self, c: int) -> int:
        return int(self.start[c + 1] - self.start[c])


@dataclass(frozen=True, kw_only=True, eq=False)
class _Scan:
    """Eligible hosts of one topology by decreasing ``full`` total."""

    shape: int
    hosts: IntArray
    totals: IntArray


def _scans(prob: Problem) -> list[_Scan]:
    out = []
    full_tot = prob.full.sum(axis=1)
    for s in range(len(prob.shapes)):
        hosts = np.flatnonzero((prob.shape == s) & prob.eligible)
        if hosts.size == 0 or prob.shapes[s].shape[0] == 0:
            continue
        order = np.argsort(-full_tot[hosts], kind="stable")
        out.append(_Scan(shape=s, hosts=hosts[order], totals=full_tot[hosts[order]]))
    return out


def _fit_rows(
    prob: Problem, items: IntArray, guest: int, shape: int, rows: IntArray
) -> tuple[BoolArray, BoolArray, IntArray]:
    """Fits of the class on ``rows`` (hosts of ``shape``): (fits now, fits squeezed, mapping)."""
    nb = int(prob.n_bins[rows[0]])
    if guest < 0 or prob.spread:
        if guest >= 0 and prob.home_ok(guest, shape)[0] != Fit.FIT:
            z = np.zeros(rows.shape[0], dtype=bool)
            return z, z, np.zeros((rows.shape[0], items.shape[0]), np.int64)
        ok_now, m = greedy_fit_many(items, prob.now[rows, :nb])
        ok_full = ok_now.copy()
        later = np.flatnonzero(~ok_now)
        if later.size:
            ok_full[later], m[later] = greedy_fit_many(items, prob.full[rows[later], :nb])
        return ok_now, ok_full, m
    dist = prob.distortion(guest, shape)
    n = rows.shape[0]
    ok_now, ok_full = np.zeros(n, bool), np.zeros(n, bool)
    m = np.zeros((n, items.shape[0]), np.int64)
    for i, h in enumerate(rows.tolist()):
        for grid, ok in ((prob.now, ok_now), (prob.full, ok_full)):
            ans, got, _ = search_fit(items, grid[h, :nb], budget=prob.fit_budget, dist=dist)
            if ans == Fit.FIT and got is not None:
                ok[i], m[i] = True, got
                ok_full[i] = True
                break
    return ok_now, ok_full, m


def _first_chunks(
    prob: Problem, cls: Classes, batch: IntArray, scans: list[_Scan]
) -> list[list[tuple[IntArray, IntArray, BoolArray]]]:
    """``_class_candidates``' first chunk of every topology for the capacity-only classes
    ``batch``, all classes at once (the same hosts, greedy and order as the per-class scan)."""
    out: list[list[tuple[IntArray, IntArray, BoolArray]]] = [[] for _ in batch.tolist()]
    items = cls.items[batch]
    totals = items.sum(axis=1)
    for sc in scans:
        nb = int(prob.n_bins[sc.hosts[0]])
        cut = np.searchsorted(-sc.totals, -totals, side="right")
        rot = (batch * 0.6180339887 * cut).astype(np.int64)
        pos = np.arange(min(CHUNK, sc.hosts.shape[0]))
        valid = pos[None, :] < np.minimum(cut, CHUNK)[:, None]
        rows = sc.hosts[(rot[:, None] + pos[None, :]) % np.maximum(cut, 1)[:, None]]
        ok_now, m_now = greedy_fit_batch(items, prob.now[rows, :nb])
        ok_full, m_full = greedy_fit_batch(items, prob.full[rows, :nb])
        ok_full |= ok_now
        m = np.where(ok_now[:, :, None], m_now, m_full)
        for i in range(batch.shape[0]):
            take = valid[i] & ok_full[i]
            out[i].append((rows[i, take], m[i, take], ~ok_now[i, take]))
    return out


def _class_candidates(
    prob: Problem,
    items: IntArray,
    guest: int,
    scans: list[_Scan],
    want: int,
    seed: int,
    first: list[tuple[IntArray, IntArray, BoolArray]] | None = None,
) -> tuple[IntArray, IntArray, BoolArray]:
    """Hosts where the class fits, its mappings there and whether each needs squeezing. The
    hosts with room enough in total are scanned from a point that depends on ``seed``, so that
    classes list different hosts and scenarios spread their restarts over the cluster."""
    total = int(items.sum())
    found: list[tuple[IntArray, IntArray, BoolArray]] = list(first or [])
    n_found = sum(f[0].shape[0] for f in found)
    exact = guest >= 0 and not prob.spread
    chunk = LIMITED_SCAN if exact else CHUNK
    los = [chunk if first is not None else 0] * len(scans)
    while n_found < want:
        progressed = False
        for k, sc in enumerate(scans):
            cut = int(np.searchsorted(-sc.totals, -total, side="right"))
            lo, hi = los[k], min(cut, los[k] + chunk)
            if hi <= lo:
                continue
            los[k], progressed = hi, True
            rot = int(seed * 0.6180339887 * cut)
            rows = sc.hosts[(rot + np.arange(lo, hi)) % cut]
            ok_now, ok_full, m = _fit_rows(prob, items, guest, sc.shape, rows)
            found.append((rows[ok_full], m[ok_full], ~ok_now[ok_full]))
            n_found += int(ok_full.sum())
        if not progressed or exact:
            break
    if not found:
        return np.zeros(0, np.int64), np.zeros((0, items.shape[0]), np.int64), np.zeros(0, bool)
    hosts = np.concatenate([f[0] for f in found])
    maps = np.concatenate([f[1] for f in found])
    squeeze = np.concatenate([f[2] for f in found])
    return hosts, maps, squeeze


def find_candidates(prob: Problem, cls: Classes, want: int = DEFAULT_WANT) -> Candidates:
    scans = _scans(prob)
    width = cls.items.shape[1]
    now_tot = prob.now.sum(axis=1)
    full_tot = prob.full.sum(axis=1)
    parts_h, parts_m, parts_s = [], [], []
    counts = np.zeros(cls.n_classes, dtype=np.int64)
    n_free = np.zeros(cls.n_classes, dtype=np.int64)
    batch = np.flatnonzero(cls.guest < 0) if scans else np.zeros(0, np.int64)
    firsts = dict(zip(batch.tolist(), _first_chunks(prob, cls, batch, scans), strict=True))
    for c in range(cls.n_classes):
        items = cls.class_items(c)
        first = firsts.get(c)
        if first is not None:
            first = [(h, m[:, : items.shape[0]], q) for h, m, q in first]
        hosts, maps, sq = _class_candidates(prob, items, int(cls.guest[c]), scans, want, c, first)
        # No-squeeze fits first (most free now first), then the rest (most free once squeezed).
        room = np.where(sq, full_tot[hosts], now_tot[hosts])
        order = np.lexsort((hosts, -room, sq))
        padded = np.zeros((hosts.shape[0], width), dtype=np.int64)
        padded[:, : items.shape[0]] = maps[order]
        parts_h.append(hosts[order])
        parts_m.append(padded)
        parts_s.append(sq[order])
        counts[c] = hosts.shape[0]
        n_free[c] = int((~sq).sum())
    start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    if not parts_h:
        parts_h, parts_m, parts_s = (
            [np.zeros(0, np.int64)],
            [np.zeros((0, width), np.int64)],
            [np.zeros(0, bool)],
        )
    return Candidates(
        start=start,
        host=np.concatenate(parts_h).astype(np.int64),
        mapping=np.concatenate(parts_m).astype(np.int64),
        squeeze=np.concatenate(parts_s).astype(bool),
        n_free=n_free,
    )
