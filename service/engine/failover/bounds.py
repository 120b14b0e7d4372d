"""Answers for every scenario of r failures without enumerating them.

``totals_fail``: a necessary condition. Failing the hosts F strands memory when the protected MiB
of F exceed what the eligible survivors can free; the worst F is the r hosts with the most
protected MiB plus freeable MiB (failing a host removes both), so that one sum decides it.

``slot_count``: a sufficient condition, never optimistic (the proof is in docs/failover.md). Per
host topology, a *slot* is a vector of MiB per pnode into which every protected guest fits alone
(within its distortion limit). A host of that topology, squeezed, holds ``n_h`` disjoint slots.
Every failed domain taking a slot of its own is a valid restart: slots are disjoint, so their
loads add up within the host's pnodes. So r failures are tolerated when, for the worst F,
``sum over survivors n_h >= protected domains on F``; the worst F is again a top-r sum, of
``n_h + domains_h``. This is XAPI's approximation made NUMA-true: XAPI assumes every VM as large
as the largest and counts host-wide MiB, which is unsound once a VM must sit on one pnode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.engine.failover.classes import Classes
from service.engine.failover.fit import Fit, search_fit
from service.engine.failover.problem import Problem

IntArray = NDArray[np.int64]

UNBOUNDED_SLOTS = 1 << 40
"""Slots of a host when no protected guest needs memory."""


def top_sum(x: IntArray, r: int) -> int:
    if r <= 0 or x.size == 0:
        return 0
    r = min(r, x.size)
    return int(np.partition(x, x.size - r)[x.size - r :].sum())


def top_hosts(x: IntArray, r: int) -> tuple[int, ...]:
    """The r largest of ``x`` (ties by index), sorted by index."""
    order = np.lexsort((np.arange(x.size), -x))
    return tuple(sorted(int(h) for h in order[:r]))


def protected_mib(prob: Problem) -> IntArray:
    """(H,) restart MiB of the domains each host protects (those of the host CSR)."""
    d = prob.host_doms
    out: IntArray = np.bincount(
        prob.dom_host[d], weights=prob.dom_total[d], minlength=prob.n_hosts
    ).astype(np.int64)
    return out


def freeable_mib(prob: Problem) -> IntArray:
    out: IntArray = np.where(prob.eligible, prob.full.sum(axis=1), 0).astype(np.int64)
    return out


def totals_fail(prob: Problem, r: int) -> tuple[int, ...] | None:
    """A set of r failed hosts whose protected MiB exceed what the survivors can free, or None."""
    q, a = protected_mib(prob), freeable_mib(prob)
    key = q + a
    if top_sum(key, r) <= int(a.sum()):
        return None
    return top_hosts(key, r)


@dataclass(frozen=True, kw_only=True, eq=False)
class Slots:
    """``vectors[s]``: the slot of topology s (None: some guest has no mapping there);
    ``per_host``: disjoint slots each host offers squeezed (0 when it may not receive);
    ``capacity_only``: no guest has a distortion limit, so pnodes are interchangeable."""

    vectors: tuple[IntArray | None, ...]
    capacity_only: bool
    per_host: IntArray


def _grow(slot: IntArray, items: IntArray) -> None:
    """Enlarge ``slot`` in place until ``items`` fit in it, each item on one bin."""
    rem = slot.copy()
    for a in sorted(items.tolist(), reverse=True):
        p = int(np.argmax(rem))
        if rem[p] >= a:
            rem[p] -= a
        else:
            slot[p] += a - rem[p]
            rem[p] = 0


def _add(prob: Problem, slot: IntArray, items: IntArray, guest: int, shape: int) -> bool:
    """Grow ``slot`` so that ``items`` fit (``guest`` >= 0: within its distortion limit,
    which has no mapping on ``shape`` when this returns False)."""
    if guest >= 0 and prob.spread:
        if prob.home_ok(guest, shape)[0] != Fit.FIT:
            return False
    elif guest >= 0 and prob.guests[guest].limit is not None:
        nb = slot.shape[0]
        roomy = np.full(nb, int(items.sum()) + 1, dtype=np.int64)
        dist = prob.distortion(guest, shape)
        ans, m, _ = search_fit(items, roomy, budget=prob.fit_budget, dist=dist)
        if ans != Fit.FIT or m is None:
            return False
        np.maximum(slot, np.bincount(m, weights=items, minlength=nb).astype(np.int64), out=slot)
        return True
    _grow(slot, items)
    return True


def _slot_vector(prob: Problem, cls: Classes, shape: int) -> IntArray | None:
    """A vector per pnode of ``shape`` that every class fits into, or None."""
    nb = 1 if prob.spread else prob.shapes[shape].shape[0]
    slot = np.zeros(nb, dtype=np.int64)
    totals = cls.items.sum(axis=1)
    for c in np.argsort(-totals, kind="stable").tolist():
        if not _add(prob, slot, cls.class_items(c), int(cls.guest[c]), shape):
            return None
    return slot


def _count(full: IntArray, vec: IntArray) -> IntArray:
    pos = vec > 0
    if not pos.any():
        return np.full(full.shape[0], UNBOUNDED_SLOTS, dtype=np.int64)
    out: IntArray = (full[:, pos] // vec[pos]).min(axis=1).astype(np.int64)
    return out


def count_slots(
    prob: Problem, vectors: tuple[IntArray | None, ...], capacity_only: bool, hosts: IntArray
) -> IntArray:
    """Slots of ``hosts`` (any subset): how many copies of their topology's slot fit once
    squeezed; with capacity-only guests also laid largest-on-largest, whichever is more."""
    out = np.zeros(hosts.shape[0], dtype=np.int64)
    ok = prob.eligible[hosts]
    for s, vec in enumerate(vectors):
        rows = np.flatnonzero(ok & (prob.shape[hosts] == s))
        if vec is None or rows.size == 0:
            continue
        full = prob.full[hosts[rows], : vec.shape[0]]
        out[rows] = _count(full, vec)
        if capacity_only:  # pnodes are interchangeable: lay slots largest on largest too
            srt = -np.sort(-full, axis=1)
            out[rows] = np.maximum(out[rows], _count(srt, -np.sort(-vec)))
    return out


def slots(prob: Problem, cls: Classes) -> Slots:
    vectors = tuple(
        _slot_vector(prob, cls, s) if prob.shapes[s].shape[0] else None
        for s in range(len(prob.shapes))
    )
    cap = prob.spread or bool((cls.guest < 0).all())
    per_host = count_slots(prob, vectors, cap, np.arange(prob.n_hosts))
    return Slots(vectors=vectors, capacity_only=cap, per_host=per_host)


def recount(prob: Problem, sl: Slots, hosts: IntArray) -> Slots:
    """``sl`` after the state of ``hosts`` changed."""
    per_host = sl.per_host.copy()
    per_host[hosts] = count_slots(prob, sl.vectors, sl.capacity_only, hosts)
    return Slots(vectors=sl.vectors, capacity_only=sl.capacity_only, per_host=per_host)


def with_guest(prob: Problem, sl: Slots, guest: int) -> Slots:
    """``sl`` after a new guest joined (slots grow until it fits; hosts are recounted)."""
    g = prob.guests[guest]
    vectors: list[IntArray | None] = []
    for s, vec in enumerate(sl.vectors):
        if vec is None:
            vectors.append(None)
            continue
        grown = vec.copy()
        limited = g.limit is not None
        vectors.append(grown if _add(prob, grown, g.items, guest if limited else -1, s) else None)
    cap = sl.capacity_only and g.limit is None
    per_host = count_slots(prob, tuple(vectors), cap, np.arange(prob.n_hosts))
    return Slots(vectors=tuple(vectors), capacity_only=cap, per_host=per_host)


def slots_tolerate(prob: Problem, sl: Slots, r: int) -> bool:
    """Whether every r failures leave enough slots for the failed domains (sufficient)."""
    if r > prob.n_hosts:
        return False
    count = np.diff(prob.host_start).astype(np.int64)
    n = np.minimum(sl.per_host, UNBOUNDED_SLOTS)
    return top_sum(n + count, r) <= int(n.sum())
