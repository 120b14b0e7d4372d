"""The guest-visible operations that move one vnode pool from one target to another.

Memory is plugged in whole hotplug blocks from the bottom of each vnode's span and the balloon
covers the unused tail of the top block, so a pool change is at most two operations: grow = deflate
the balloon to the top of the current block, then plug the new blocks (the guest keeps the tail of
the new top block ballooned); shrink = unplug the blocks above the new top, then inflate the balloon
inside the new top block. "Balloon down and up this PFN block on NUMA node X", one pool at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from .topology import VirtualTopology

__all__ = ["PoolOp", "pool_change_ops"]

PoolOpKind = Literal["plug", "unplug", "balloon"]
Ranges = tuple[tuple[int, int], ...]


@dataclass(frozen=True, kw_only=True)
class PoolOp:
    vnode: int
    op: PoolOpKind
    mib: int
    pfn_ranges: tuple[tuple[int, int], ...]
    target_mib: int  # the pool's target once this operation is done
    grow: bool  # the pool grows to target_mib (else it shrinks to it)


def _op(
    vnode: int, op: PoolOpKind, mib: int, target_mib: int, *, grow: bool, ranges: Ranges = ()
) -> PoolOp:
    return PoolOp(vnode=vnode, op=op, mib=mib, pfn_ranges=ranges, target_mib=target_mib, grow=grow)


def _shrink_ops(topo: VirtualTopology, v: int, t0: int, t1: int, b0: int, b1: int) -> list[PoolOp]:
    """Unplug the whole blocks above the new top, then balloon the rest of the way down."""
    ops: list[PoolOp] = []
    top1 = b1 * topo.block_mib
    start = t0
    if b1 < b0:
        ranges = tuple(topo.block_pfn_ranges(v, b1, b0 - b1))
        ops.append(_op(v, "unplug", t0 - top1, top1, grow=False, ranges=ranges))
        start = top1
    if start > t1:
        ops.append(_op(v, "balloon", start - t1, t1, grow=False))
    return ops


def _grow_ops(topo: VirtualTopology, v: int, t0: int, t1: int, b0: int, b1: int) -> list[PoolOp]:
    """Balloon up to the top of the partly plugged block, then plug the blocks above."""
    if b1 <= b0:
        return [_op(v, "balloon", t1 - t0, t1, grow=True)]
    ops: list[PoolOp] = []
    top0 = b0 * topo.block_mib
    if top0 > t0:
        ops.append(_op(v, "balloon", top0 - t0, top0, grow=True))
    ranges = tuple(topo.block_pfn_ranges(v, b0, b1 - b0))
    ops.append(_op(v, "plug", t1 - top0, t1, grow=True, ranges=ranges))
    return ops


def pool_change_ops(
    *, topo: VirtualTopology, before_mib: NDArray[np.integer], after_mib: NDArray[np.integer]
) -> list[PoolOp]:
    """Operations, vnode by vnode, that take every pool from ``before_mib`` to ``after_mib``.

    The block arithmetic is vectorized over vnodes; only changed vnodes produce operations.
    """
    t0 = np.asarray(before_mib, dtype=np.int64)
    t1 = np.asarray(after_mib, dtype=np.int64)
    b0, b1 = topo.plugged_blocks(t0), topo.plugged_blocks(t1)
    ops: list[PoolOp] = []
    for v in np.flatnonzero(t0 != t1).tolist():
        change = _shrink_ops if t1[v] < t0[v] else _grow_ops
        ops.extend(change(topo, v, int(t0[v]), int(t1[v]), int(b0[v]), int(b1[v])))
    return ops
