"""What each domain holds on each pnode: its backing, or more while its balloon driver lags.

A guest asked to shrink still holds its memory until the balloon driver gives it back, so the
accounting charges ``max(target, reported actual)`` per vnode: the excess over the target stays
on the pnodes that back the vnode (in proportion), or its home pnode when the vnode is empty.
Memory a guest has not released is thereby never promised to someone else.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .distribute import apportion

__all__ = ["charge_mib"]

I64 = NDArray[np.int64]


def charge_mib(*, backing_mib: I64, actual_mib: I64, home: I64) -> I64:
    """(D, V, P) charges from backing (D, V, P), reported actuals (D, V; -1 = never reported)
    and home pnodes (D, V). Vectorized over every domain and vnode of a host."""
    x = np.asarray(backing_mib, dtype=np.int64)
    d, v, p = x.shape
    if d * v == 0:
        return x.copy()
    target = x.sum(axis=2)
    actual = np.asarray(actual_mib, dtype=np.int64)
    excess = np.where(actual >= 0, np.maximum(actual - target, 0), 0)
    if not excess.any():
        return x.copy()
    weights = x.reshape(d * v, p).copy()
    empty = weights.sum(axis=1) == 0
    hm = np.clip(np.asarray(home, dtype=np.int64).reshape(d * v), 0, max(p - 1, 0))
    weights[empty, hm[empty]] = 1
    extra = apportion(total_mib=excess.reshape(d * v), weights=weights).reshape(d, v, p)
    out: I64 = x + extra
    return out
