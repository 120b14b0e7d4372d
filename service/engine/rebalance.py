"""AutoNUMA on one host: whole-block moves that make every domain's memory more faithful.

The seed thread's "balloon down and up this PFN block on NUMA node X": a move takes ``k`` whole
blocks (the domain's ``block_mib``) out of pool ``from_vnode`` backed by ``from_pnode`` and puts
them into pool ``to_vnode`` backed by ``to_pnode`` (same vnode when only the pnode changes).  The
domain total is unchanged, pools stay ``<= size``, and each move first frees on ``from_pnode``
then uses ``to_pnode``, so a move only needs ``k`` blocks of free memory on ``to_pnode`` (and
none when the pnode does not change).  Moves are applied in the order returned.

Objective: the host distortion, i.e. the memory-weighted mean of the domains' distortions
(``metrics.distortion``), ``sum_d M_d * dist_d / sum_d M_d``.  Totals are constant, so it is
linear in the backing: one MiB of domain d in (u, p) costs ``C_d[u, p] / W_d / M`` (``C`` from
``metrics.cost_matrix_many``, ``W_d`` its vCPU weight).  A move's gain per MiB is the cost
difference of source and target, so the best move per MiB is "most expensive occupied cell to
cheapest cell with room".  Feasibility of the target depends on the source only through "same
vnode" (no size check) and "same pnode" (no room check); the best pair is therefore exactly the
best of three maximum-minus-minimum scores, each vectorised over every domain: per vnode row
(change pnode; target needs room), per pnode column (change vnode; target needs size) and
globally (target needs both, a superset-safe relaxation: a relaxed pair sharing the source's row
or column is still a valid move of the other kinds, or gains nothing).  Greedy: take the best
move, as many whole blocks as fit (source, size, room, budget), repeat until the budget is spent
or nothing gains.  Every move strictly lowers the objective, so ``distortion_after <=
distortion_before``.

PFN ranges: the engine tracks MiB per (vnode, pnode), not which block sits where; by convention
a move names the top plugged blocks of ``from_vnode`` (``pfn_ranges``) and the blocks plugged
next on ``to_vnode`` (``to_pfn_ranges``, the same blocks when the vnode does not change:
ballooned down and up again on the new node).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import InputError
from .inputs import int_array
from .metrics import cost_matrix_many, distortion_many, remote_fraction_many
from .topology import PAGES_PER_MIB

__all__ = ["BlockMove", "RebalancePlan", "plan_rebalance"]

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

_MIN_GAIN = 1e-9
"""Smallest per-MiB gain (SLIT units per vCPU weight) worth a move: guards against float noise."""


@dataclass(frozen=True, kw_only=True)
class BlockMove:
    """Move ``mib`` (whole blocks) of domain ``domain`` between two (vnode, pnode) cells."""

    domain: int
    from_vnode: int
    from_pnode: int
    to_vnode: int
    to_pnode: int
    mib: int
    pfn_ranges: tuple[tuple[int, int], ...]
    to_pfn_ranges: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, eq=False, kw_only=True)
class RebalancePlan:
    """Moves in order, their total, and host figures before/after (memory-weighted)."""

    moves: tuple[BlockMove, ...]
    moved_mib: int
    distortion_before: float
    distortion_after: float
    remote_fraction_before: float
    remote_fraction_after: float
    backing_after_mib: I64


def _host_figures(x: I64, vd: I64, pd: I64, home: I64, cw: I64) -> tuple[float, float]:
    """Memory-weighted distortion and remote fraction over the host's domains."""
    mem = x.sum(axis=(1, 2)).astype(np.float64)
    total = float(mem.sum())
    if total == 0:
        return 0.0, 0.0
    dist = distortion_many(backing_mib=x, vdist=vd, pdist=pd, home=home, vcpu_count=cw)
    rem = remote_fraction_many(backing_mib=x, home=home)
    return float((dist * mem).sum() / total), float((rem * mem).sum() / total)


def _ranges(start_pfn: int, first_block: int, n: int, block: int) -> tuple[tuple[int, int], ...]:
    step = block * PAGES_PER_MIB
    s = start_pfn + step * np.arange(first_block, first_block + n, dtype=np.int64)
    return tuple((int(a), int(a) + step) for a in s.tolist())


def _check(x0: I64, size: I64, vd: I64, cw: I64, hm: I64, blk: I64, pd: I64, free0: I64) -> None:
    """InputError unless the host's arrays agree in shape and are in range.

    ``x0``: backing (D, V, P); ``cw``: vCPU count per vnode; ``hm``: homes; ``blk``: blocks."""
    d, v, p = x0.shape
    if (
        size.shape != (d, v)
        or vd.shape != (d, v, v)
        or cw.shape != (d, v)
        or hm.shape != (d, v)
        or blk.shape != (d,)
        or pd.shape != (p, p)
        or free0.shape != (p,)
    ):
        raise InputError(
            "inconsistent shapes: backing (D,V,P), size/vcpus/home (D,V), "
            "vdist (D,V,V), block (D,), pdist (P,P), free (P,)"
        )
    if (x0 < 0).any() or (cw < 0).any() or (blk <= 0).any() or (size < 0).any():
        raise InputError("backing, vcpus, sizes must be non-negative and blocks positive")
    if (x0.sum(axis=2) > size).any():
        raise InputError("a pool is above its vnode size")
    if d * v and ((hm < 0) | (hm >= p)).any():
        raise InputError("home must index a pnode")


@dataclass(frozen=True, kw_only=True)
class _Host:
    """The host's fixed arrays during the greedy: per-MiB cost (D, V, P), sizes (D, V), blocks
    (D,) and each vnode's first PFN (D, V)."""

    cost: F64
    size: I64
    blk: I64
    starts: I64


@dataclass(frozen=True, kw_only=True)
class _Cell:
    """A candidate move: domain, source (vnode, pnode) and target (vnode, pnode)."""

    dom: int
    fu: int
    fp: int
    tu: int
    tp: int


def _best_cell(host: _Host, x: I64, free: I64, budget: int) -> _Cell | None:
    """The move of greatest gain per MiB, or None when nothing gains (module docstring)."""
    cost, size, blk = host.cost, host.size, host.blk
    d, v, p = x.shape
    b3 = blk[:, None, None]
    neg, pos = -np.inf, np.inf
    okd = (blk <= budget)[:, None, None]
    t = x.sum(axis=2)
    src_ok = (x >= b3) & okd
    vroom = (size - t >= blk[:, None])[:, :, None]  # (D, V, 1)
    proom = free[None, None, :] >= b3  # (D, 1, P)
    src_c = np.where(src_ok, cost, neg)
    # (a) same vnode, other pnode: per (d, u) row
    tgt_a = np.where(proom, cost, pos)
    ia_s, ia_t = src_c.argmax(axis=2), tgt_a.argmin(axis=2)  # (D, V)
    ga = (
        np.take_along_axis(src_c, ia_s[:, :, None], 2)[:, :, 0]
        - np.take_along_axis(tgt_a, ia_t[:, :, None], 2)[:, :, 0]
    )
    # (b) same pnode, other vnode: per (d, p) column
    tgt_b = np.where(vroom, cost, pos)
    ib_s, ib_t = src_c.argmax(axis=1), tgt_b.argmin(axis=1)  # (D, P)
    gb = (
        np.take_along_axis(src_c, ib_s[:, None, :], 1)[:, 0, :]
        - np.take_along_axis(tgt_b, ib_t[:, None, :], 1)[:, 0, :]
    )
    # (c) both change (relaxed): global per domain
    tgt_c = np.where(vroom & proom, cost, pos).reshape(d, v * p)
    flat_s = src_c.reshape(d, v * p)
    ic_s, ic_t = flat_s.argmax(axis=1), tgt_c.argmin(axis=1)
    gc = flat_s[np.arange(d), ic_s] - tgt_c[np.arange(d), ic_t]
    best = np.stack(
        [
            np.nanmax(np.where(np.isfinite(ga), ga, neg), axis=1),
            np.nanmax(np.where(np.isfinite(gb), gb, neg), axis=1),
            np.where(np.isfinite(gc), gc, neg),
        ],
        axis=1,
    )  # (D, 3)
    # Host objective gain per MiB: every domain's cost is already per MiB of the host.
    dom, kind = divmod(int(np.argmax(best)), 3)
    if not float(best[dom, kind]) > _MIN_GAIN:
        return None
    if kind == 0:
        u = int(np.argmax(np.where(np.isfinite(ga[dom]), ga[dom], neg)))
        return _Cell(dom=dom, fu=u, fp=int(ia_s[dom, u]), tu=u, tp=int(ia_t[dom, u]))
    if kind == 1:
        q = int(np.argmax(np.where(np.isfinite(gb[dom]), gb[dom], neg)))
        return _Cell(dom=dom, fu=int(ib_s[dom, q]), fp=q, tu=int(ib_t[dom, q]), tp=q)
    fu, fp = divmod(int(ic_s[dom]), p)
    tu, tp = divmod(int(ic_t[dom]), p)
    return _Cell(dom=dom, fu=fu, fp=fp, tu=tu, tp=tp)


def _move(host: _Host, x: I64, free: I64, budget: int, c: _Cell) -> BlockMove | None:
    """As many whole blocks as fit (source, size, room, budget), applied to ``x`` and
    ``free`` in place; None if not one block fits (cannot happen: candidates were filtered
    on one whole block)."""
    t = x.sum(axis=2)
    dom, fu, fp, tu, tp = c.dom, c.fu, c.fp, c.tu, c.tp
    b = int(host.blk[dom])
    lim = [int(x[dom, fu, fp]), budget]
    if tu != fu:
        lim.append(int(host.size[dom, tu] - t[dom, tu]))
    if tp != fp:
        lim.append(int(free[tp]))
    nblk = min(lim) // b
    if nblk <= 0:
        return None
    mib = nblk * b
    lf, lt = int(t[dom, fu]), int(t[dom, tu])
    top = -(-lf // b)
    out_r = _ranges(int(host.starts[dom, fu]), top - nblk, nblk, b)
    in_r = out_r if tu == fu else _ranges(int(host.starts[dom, tu]), -(-lt // b), nblk, b)
    x[dom, fu, fp] -= mib
    x[dom, tu, tp] += mib
    free[fp] += mib
    free[tp] -= mib
    return BlockMove(
        domain=dom,
        from_vnode=fu,
        from_pnode=fp,
        to_vnode=tu,
        to_pnode=tp,
        mib=mib,
        pfn_ranges=out_r,
        to_pfn_ranges=in_r,
    )


def plan_rebalance(
    *,
    backing_mib: ArrayLike,
    size_mib: ArrayLike,
    vdist: ArrayLike,
    vcpu_count: ArrayLike,
    home: ArrayLike,
    block_mib: ArrayLike,
    pdist: ArrayLike,
    free_mib: ArrayLike,
    budget_mib: int,
) -> RebalancePlan:
    """Greedy block moves within ``budget_mib`` (see the module docstring).

    Shapes: backing (D,V,P), size/vcpus/home (D,V) (pad missing vnodes with size 0, vcpus 0),
    vdist (D,V,V), block (D,), pdist (P,P), free (P,): what the host has free per pnode now.
    """
    x0 = int_array(backing_mib, "backing_mib", 3)
    size = int_array(size_mib, "size_mib", 2)
    vd = int_array(vdist, "vdist", 3)
    cw = int_array(vcpu_count, "vcpu_count", 2)
    hm = int_array(home, "home", 2)
    blk = int_array(block_mib, "block_mib", 1)
    pd = int_array(pdist, "pdist", 2)
    free0 = int_array(free_mib, "free_mib", 1)
    _check(x0, size, vd, cw, hm, blk, pd, free0)
    dist0, remote0 = _host_figures(x0, vd, pd, hm, cw)
    x = x0.copy()
    moves: list[BlockMove] = []
    if x0.size == 0:
        return _plan(moves, x, (dist0, remote0), (dist0, remote0))
    wsum = cw.sum(axis=1).astype(np.float64)
    cost = (
        cost_matrix_many(vdist=vd, pdist=pd, home=hm, vcpu_count=cw)
        / np.where(wsum > 0, wsum, 1.0)[:, None, None]
    )
    cost[wsum == 0] = 0.0  # no vCPU weight: distortion is 0 whatever the backing
    starts = np.cumsum(size, axis=1) * PAGES_PER_MIB - size * PAGES_PER_MIB  # (D, V)
    host = _Host(cost=cost, size=size, blk=blk, starts=starts)
    free = free0.copy()
    budget = int(budget_mib)
    while (cell := _best_cell(host, x, free, budget)) is not None:
        move = _move(host, x, free, budget, cell)
        if move is None:
            break
        budget -= move.mib
        moves.append(move)
    return _plan(moves, x, (dist0, remote0), _host_figures(x, vd, pd, hm, cw))


def _plan(
    moves: list[BlockMove], x: I64, before: tuple[float, float], after: tuple[float, float]
) -> RebalancePlan:
    """The plan of ``moves``; ``before``/``after``: (distortion, remote fraction) figures."""
    return RebalancePlan(
        moves=tuple(moves),
        moved_mib=sum(m.mib for m in moves),
        distortion_before=before[0],
        distortion_after=after[0],
        remote_fraction_before=before[1],
        remote_fraction_after=after[1],
        backing_after_mib=x,
    )
