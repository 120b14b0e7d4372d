"""What placement scores: a guest's and a host's arrays, and the pieces of the score.

The objectives are lexicographic, as the design asks: first capacity (memory of the vnodes homed
on a pnode must fit its headroom), then distance distortion (what the guest believes about
distances should match where its memory really is), then load balance (libxl-style: prefer the
least loaded, most free pnodes). Balance enters the score with a weight small enough that it only
breaks ties: ``score = distortion + BALANCE_WEIGHT * balance`` with ``balance`` in ``[0, 1]``, so
a distortion difference larger than ``BALANCE_WEIGHT`` always wins. Capacity is compared before
the score, never folded into it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

BALANCE_WEIGHT = 1e-3
"""Weight of balance in the score; balance lies in [0, 1], so it cannot beat a distortion gap
larger than this (SLIT distances are integers, distortion differences are usually far larger)."""


_OVERFLOW_KEY = 1024.0
"""Exchange rate of one MiB of overflow into score units in the local search: larger than any
score difference (distances span 10..254), so capacity stays lexicographically first."""

_CHUNK_ELEMS = 4_000_000
"""Bound on temporary array elements, so exact search and ranking stay within tens of MiB."""

_TOL = 1e-12


@dataclass(frozen=True, kw_only=True)
class _Guest:
    demand: FloatArray
    demand_int: IntArray
    cw: FloatArray
    cw_int: IntArray
    vdist: FloatArray
    vdist_int: IntArray
    w: FloatArray
    total_cw: float
    total_demand: float
    key: bytes  # the inputs, for memoized searches


@dataclass(frozen=True, kw_only=True)
class _Host:
    free: FloatArray
    cpus: FloatArray
    load: FloatArray
    pdist: FloatArray
    pdist_int: IntArray


# --------------------------------------------------------------------------- input handling


def _int_vector(x: ArrayLike, name: str) -> IntArray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers")
    out = arr.astype(np.int64)
    if np.any(out < 0):
        raise ValueError(f"{name} must not be negative")
    return out


def _int_square(x: ArrayLike, n: int, name: str) -> IntArray:
    arr = np.asarray(x)
    if arr.shape != (n, n):
        raise ValueError(f"{name} must be {n}x{n}, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers")
    return arr.astype(np.int64)


def _make_guest(demand_mib: ArrayLike, vcpu_count: ArrayLike, vdist: ArrayLike) -> _Guest:
    """The guest's arrays, validated, as floats for scoring and integers for exact figures."""
    demand = _int_vector(demand_mib, "demand_mib")
    cw = _int_vector(vcpu_count, "vcpu_count")  # cw: vCPU count per vnode
    v = demand.shape[0]
    if v == 0:
        raise ValueError("a domain needs at least one vnode")
    if cw.shape != (v,):
        raise ValueError("vcpu_count must have one entry per vnode")
    vd = _int_square(vdist, v, "vdist")
    total_cw = float(cw.sum())
    total_demand = float(demand.sum())
    denom = total_cw * total_demand
    if denom > 0:
        w = np.outer(cw.astype(np.float64), demand.astype(np.float64)) / denom
    else:
        w = np.zeros((v, v), dtype=np.float64)
    return _Guest(
        demand=demand.astype(np.float64),
        demand_int=demand,
        cw=cw.astype(np.float64),
        cw_int=cw,
        vdist=vd.astype(np.float64),
        vdist_int=vd,
        w=w,
        total_cw=total_cw,
        total_demand=total_demand,
        key=demand.tobytes() + cw.tobytes() + vd.tobytes(),
    )


def _make_host(
    free_mib: ArrayLike, cpus: ArrayLike, pdist: ArrayLike, load_vcpus: ArrayLike
) -> _Host:
    free = _int_vector(free_mib, "free_mib")
    p = free.shape[0]
    c = _int_vector(cpus, "cpus")
    load = _int_vector(load_vcpus, "load_vcpus")
    if c.shape != (p,) or load.shape != (p,):
        raise ValueError("free_mib, cpus and load_vcpus must have one entry per pnode")
    d = _int_square(pdist, p, "pdist")
    return _Host(
        free=free.astype(np.float64),
        cpus=c.astype(np.float64),
        load=load.astype(np.float64),
        pdist=d.astype(np.float64),
        pdist_int=d,
    )


# --------------------------------------------------------------------------- scoring pieces


def _overflow(mem: FloatArray, free: FloatArray) -> FloatArray:
    """MiB that do not fit, per pnode; summed over the last axis by callers."""
    return np.maximum(mem - free, 0.0)


def _cpu_contrib(n: FloatArray, load: FloatArray, cpus: FloatArray) -> FloatArray:
    """Guest vCPUs on a pnode times that pnode's bounded utilisation after placement.

    ``x / (cpus + x)`` grows with load like ``vcpus / cpus`` but stays below 1 under overcommit
    and is 1 for a pnode without CPUs, so the balance term stays in [0, 1].
    """
    x = load + n
    den = cpus + x
    safe = np.where(den > 0, den, 1.0)
    out: FloatArray = np.where(den > 0, n * x / safe, 0.0)
    return out


def _mem_contrib(m: FloatArray, free: FloatArray) -> FloatArray:
    """Guest MiB on a pnode times the share of that pnode's headroom they take (capped at 1)."""
    safe = np.where(free > 0, free, 1.0)
    frac = np.where(free > 0, np.minimum(m / safe, 1.0), 1.0)
    out: FloatArray = m * frac
    return out


def _balance_from_sums(g: _Guest, cpu_sum: FloatArray, mem_sum: FloatArray) -> FloatArray:
    cpu = cpu_sum / g.total_cw if g.total_cw > 0 else np.zeros_like(cpu_sum)
    mem = mem_sum / g.total_demand if g.total_demand > 0 else np.zeros_like(mem_sum)
    out: FloatArray = 0.5 * (cpu + mem)
    return out


def _pnode_sums(maps: IntArray, weights: FloatArray, p: int) -> FloatArray:
    """Per candidate, the sum of ``weights`` of the vnodes homed on each pnode: (C, P)."""
    c = maps.shape[0]
    flat = (np.arange(c, dtype=np.int64)[:, None] * p + maps).ravel()
    wts = np.broadcast_to(weights, maps.shape).ravel()
    out: FloatArray = np.bincount(flat, weights=wts, minlength=c * p).astype(np.float64)
    return out.reshape(c, p)


def _distortions(maps: IntArray, g: _Guest, pdist: FloatArray) -> FloatArray:
    """Distortion of every candidate mapping (C, V) in chunked vectorized passes."""
    c, v = maps.shape
    out = np.empty(c, dtype=np.float64)
    step = max(1, _CHUNK_ELEMS // max(1, v * v))
    for lo in range(0, c, step):
        m = maps[lo : lo + step]
        dm = pdist[m[:, :, None], m[:, None, :]]
        out[lo : lo + step] = np.einsum("au,cau->c", g.w, np.abs(g.vdist[None] - dm))
    return out


def _exact_distortion(g: _Guest, h: _Host, mapping: IntArray) -> float:
    """The reported distortion, from integers so it matches the definition to the last bit."""
    denom = g.cw_int.sum() * g.demand_int.sum()
    if denom == 0:
        return 0.0
    diff = np.abs(g.vdist_int - h.pdist_int[mapping[:, None], mapping[None, :]])
    num = int((g.cw_int[:, None] * g.demand_int[None, :] * diff).sum())
    return num / int(denom)


def _host_terms(
    g: _Guest,
    maps: IntArray,
    free: FloatArray,
    cpus: FloatArray,
    load: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Overflow MiB and balance of K mappings on H hosts of one pnode count: two (H, K) arrays.

    Mappings are shared by the hosts, so the per-pnode sums are computed once and only the
    host-dependent comparison is broadcast.
    """
    p = free.shape[1]
    mem = _pnode_sums(maps, g.demand, p)  # (K, P)
    ncpu = _pnode_sums(maps, g.cw, p)
    hn, k = free.shape[0], maps.shape[0]
    over = np.empty((hn, k), dtype=np.float64)
    bal = np.empty((hn, k), dtype=np.float64)
    step = max(1, _CHUNK_ELEMS // max(1, k * p))
    for lo in range(0, hn, step):
        sl = slice(lo, lo + step)
        f = free[sl, None, :]
        over[sl] = _overflow(mem[None], f).sum(axis=2)
        cpu_sum = _cpu_contrib(ncpu[None], load[sl, None, :], cpus[sl, None, :]).sum(axis=2)
        mem_sum = _mem_contrib(mem[None], f).sum(axis=2)
        bal[sl] = _balance_from_sums(g, cpu_sum, mem_sum)
    return over, bal


def _best_lexicographic(over: FloatArray, score: FloatArray) -> IntArray:
    """Per row, the index of least overflow, then least score, then lowest index."""
    min_over = over.min(axis=-1, keepdims=True)
    masked = np.where(over <= min_over, score, np.inf)
    out: IntArray = np.argmin(masked, axis=-1).astype(np.int64)
    return out
