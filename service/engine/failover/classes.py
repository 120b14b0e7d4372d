"""Guests grouped into classes that fit the same hosts, so candidate hosts are searched once per
class instead of once per domain.

A guest without a distortion limit fits a host exactly when its vnode sizes, as a multiset, pack
into the host's free pnodes: the order of its vnodes and its distances do not matter. Its class is
that multiset rounded *up* to a few levels per octave (its envelope): whatever mapping fits the
envelope fits the guest too (each pnode receives at most the envelope's MiB), so a candidate
found for a class is a proof for every member, while a host the envelope misses is merely not
proposed (the scenario search then looks at every host with the guest's own sizes). Rounding
is coarsened until the classes are few. A guest with a distortion limit is its own class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.engine.failover.problem import Problem

IntArray = NDArray[np.int64]

MAX_CLASSES = 1024
"""Most classes before the envelopes are coarsened (one candidate search per class)."""


@dataclass(frozen=True, kw_only=True, eq=False)
class Classes:
    """``items`` (C, K) class items padded with 0, ``n_items`` (C,); ``guest`` (C,) the one
    guest of an exact class (-1 for an envelope); ``of_guest`` (G,); ``perm`` (G, K): class item
    i of guest g is guest item ``perm[g, i]`` (padding maps to itself); ``guest_items`` (G, K)
    every guest's own items, padded with 0; ``sorted_items`` (G, K) them in class order."""

    items: IntArray
    n_items: IntArray
    guest: IntArray
    of_guest: IntArray
    perm: IntArray
    guest_items: IntArray
    sorted_items: IntArray

    @property
    def n_classes(self) -> int:
        return int(self.n_items.shape[0])

    def class_items(self, c: int) -> IntArray:
        out: IntArray = self.items[c, : int(self.n_items[c])]
        return out


def envelope(x: IntArray, steps: int) -> IntArray:
    """``x`` rounded up to ``steps`` levels per octave (``steps`` 0: to the row maximum)."""
    out = x.astype(np.int64).copy()
    pos = out > 0
    if steps == 0:
        return np.where(pos, out.max(axis=-1, keepdims=True), 0)
    e = np.floor(np.log2(np.where(pos, out, 1).astype(np.float64))).astype(np.int64)
    q = np.left_shift(1, np.maximum(e - int(np.log2(steps)), 0))
    out[pos] = (-(-out[pos] // q[pos])) * q[pos]
    return out


def _padded(prob: Problem) -> tuple[IntArray, IntArray]:
    g = len(prob.guests)
    width = max((x.items.shape[0] for x in prob.guests), default=1)
    items = np.zeros((g, width), dtype=np.int64)
    n = np.zeros(g, dtype=np.int64)
    for i, x in enumerate(prob.guests):
        items[i, : x.items.shape[0]] = x.items
        n[i] = x.items.shape[0]
    return items, n


def build_classes(prob: Problem, max_classes: int = MAX_CLASSES) -> Classes:
    items, n = _padded(prob)
    g, width = items.shape
    limited = np.array([x.limit is not None for x in prob.guests], dtype=bool)
    pad = np.arange(width)[None, :] >= n[:, None]
    # Sort each guest's items decreasing (padding last), keeping the permutation.
    key = np.where(pad, 1, -items)
    perm = np.argsort(key, axis=1, kind="stable")
    perm[limited] = np.arange(width)  # exact classes keep the guest's own order
    sorted_items = np.take_along_axis(items, perm, axis=1)
    for steps in (4, 2, 1, 0):
        env = envelope(sorted_items, steps)
        env[limited] = -1  # never merged: made unique below
        rows = np.concatenate([n[:, None], env], axis=1)
        rows[limited, 0] = -1 - np.flatnonzero(limited)
        uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
        if uniq.shape[0] <= max_classes or steps == 0:
            break
    inverse = inverse.reshape(-1)
    c = uniq.shape[0]
    first = np.full(c, -1, dtype=np.int64)
    first[inverse[::-1]] = np.arange(g)[::-1]
    cls_items = np.where(limited[first, None], sorted_items[first], uniq[:, 1:])
    guest = np.where(limited[first], first, -1)
    return Classes(
        items=np.maximum(cls_items, 0),
        n_items=n[first],
        guest=guest.astype(np.int64),
        of_guest=inverse.astype(np.int64),
        perm=perm.astype(np.int64),
        guest_items=items,
        sorted_items=np.take_along_axis(items, perm, axis=1),
    )


def class_for(cls: Classes, items: IntArray) -> tuple[int, IntArray] | None:
    """A class whose candidates also hold a guest the classes were not built with (one that
    an admission check adds): the class with the least MiB whose sorted items are each at
    least the guest's, and the guest's permutation (class item i is guest item perm[i])."""
    n = items.shape[0]
    if cls.n_classes == 0 or n > cls.items.shape[1]:
        return None
    perm = np.argsort(-items, kind="stable")
    need = items[perm]
    exact = cls.guest >= 0
    holds = (cls.items[:, :n] >= need[None, :]).all(axis=1) & ~exact & (cls.n_items >= n)
    if not holds.any():
        return None
    c = int(np.flatnonzero(holds)[np.argmin(cls.items[holds].sum(axis=1))])
    full = np.arange(cls.items.shape[1])
    full[:n] = perm
    return c, full
