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


@dataclass(frozen=True)
class PoolOp:
    vnode: int
    op: PoolOpKind
    mib: int
    pfn_ranges: tuple[tuple[int, int], ...]
    target_mib: int  # the pool's target once this operation is done
    grow: bool  # the pool grows to target_mib (else it shrinks to it)


def pool_change_ops(
    topo: VirtualTopology, before_mib: NDArray[np.integer], after_mib: NDArray[np.integer]
) -> list[PoolOp]:
    """Operations, vnode by vnode, that take every pool from ``before_mib`` to ``after_mib``.

    The block arithmetic is vectorized over vnodes; only changed vnodes produce operations.
    """
    t0 = np.asarray(before_mib, dtype=np.int64)
    t1 = np.asarray(after_mib, dtype=np.int64)
    block = topo.block_mib
    b0, b1 = topo.plugged_blocks(t0), topo.plugged_blocks(t1)
    top0, top1 = b0 * block, b1 * block
    ops: list[PoolOp] = []
    for v in np.flatnonzero(t0 != t1).tolist():
        if t1[v] < t0[v]:
            if b1[v] < b0[v]:
                ranges = tuple(topo.block_pfn_ranges(v, int(b1[v]), int(b0[v] - b1[v])))
                ops.append(PoolOp(v, "unplug", int(t0[v] - top1[v]), ranges, int(top1[v]), False))
                start = int(top1[v])
            else:
                start = int(t0[v])
            if start > t1[v]:
                ops.append(PoolOp(v, "balloon", int(start - t1[v]), (), int(t1[v]), False))
        else:
            if b1[v] > b0[v]:
                if top0[v] > t0[v]:
                    ops.append(PoolOp(v, "balloon", int(top0[v] - t0[v]), (), int(top0[v]), True))
                ranges = tuple(topo.block_pfn_ranges(v, int(b0[v]), int(b1[v] - b0[v])))
                ops.append(PoolOp(v, "plug", int(t1[v] - top0[v]), ranges, int(t1[v]), True))
            else:
                ops.append(PoolOp(v, "balloon", int(t1[v] - t0[v]), (), int(t1[v]), True))
    return ops
