"""Placement of a domain's vnodes on a host's pnodes, and ranking of the hosts of a cluster.

The objectives are lexicographic, as the design asks: first capacity (memory of the vnodes homed
on a pnode must fit its headroom), then distance distortion (what the guest believes about
distances should match where its memory really is), then load balance (libxl-style: prefer the
least loaded, most free pnodes). Balance enters the score with a weight small enough that it only
breaks ties: ``score = distortion + BALANCE_WEIGHT * balance`` with ``balance`` in ``[0, 1]``, so
a distortion difference larger than ``BALANCE_WEIGHT`` always wins. Capacity is compared before
the score, never folded into it.

Search is exact (every mapping scored in one vectorized pass) when ``P ** V`` is small and a
bounded heuristic beyond: a multi-start greedy construction vectorized over its starts, then a
local search that prices every single-vnode move and every pair swap as arrays each iteration,
then a few seeded perturbations while the evaluation budget lasts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

BALANCE_WEIGHT = 1e-3
"""Weight of balance in the score; balance lies in [0, 1], so it cannot beat a distortion gap
larger than this (SLIT distances are integers, distortion differences are usually far larger)."""

EXACT_LIMIT = 50_000
"""Largest number of candidate mappings (P ** V) that is enumerated exhaustively."""

DEFAULT_BUDGET_EVALS = 300_000
"""Candidate evaluations the heuristic may spend; 32 vnodes on 64 pnodes stay well under 1 s."""

DEFAULT_POOL_SIZE = 256
"""Mappings per distinct host topology that rank_hosts scores against every host of it."""

_OVERFLOW_KEY = 1024.0
"""Exchange rate of one MiB of overflow into score units in the local search: larger than any
score difference (distances span 10..254), so capacity stays lexicographically first."""

_CHUNK_ELEMS = 4_000_000
"""Bound on temporary array elements, so exact search and ranking stay within tens of MiB."""

_TOL = 1e-12
_MAX_STARTS = 64
_POLISH = 4
_SEED = 0x5EED
_BATCH_STARTS = 4
_REFINE_TOP = 8


@dataclass(frozen=True)
class Placement:
    """Where a domain's vnodes are homed on one host and how good that is.

    ``mapping`` is meaningful even when ``spread`` or infeasible: it is the best home per vnode
    found, so callers can explain or spread from it.
    """

    feasible: bool
    mapping: IntArray
    distortion: float
    score: float
    spread: bool
    reason: str


@dataclass(frozen=True)
class HostArrays:
    """One host's state as the placement needs it (all per pnode, memory in MiB)."""

    free_mib: IntArray
    cpus: IntArray
    pdist: IntArray
    load_vcpus: IntArray


@dataclass(frozen=True)
class Ranking:
    """Placements in the input order of the hosts, plus host indices best first."""

    placements: tuple[Placement, ...]
    order: IntArray


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


def _make_guest(demand_mib: ArrayLike, vcpus: ArrayLike, vdist: ArrayLike) -> _Guest:
    demand = _int_vector(demand_mib, "demand_mib")
    cw = _int_vector(vcpus, "vcpus")
    v = demand.shape[0]
    if v == 0:
        raise ValueError("a domain needs at least one vnode")
    if cw.shape != (v,):
        raise ValueError("vcpus must have one entry per vnode")
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


# --------------------------------------------------------------------------- exact search


def _all_mappings(v: int, p: int) -> IntArray:
    if p == 1:
        return np.zeros((1, v), dtype=np.int64)
    idx = np.arange(p**v, dtype=np.int64)
    digits = (idx[:, None] // (p ** np.arange(v - 1, -1, -1, dtype=np.int64))[None, :]) % p
    return digits.astype(np.int64)


def _exact(g: _Guest, h: _Host) -> IntArray:
    maps = _all_mappings(g.demand.shape[0], h.free.shape[0])
    dist = _distortions(maps, g, h.pdist)
    over, bal = _host_terms(g, maps, h.free[None], h.cpus[None], h.load[None])
    best = int(_best_lexicographic(over, dist[None] + BALANCE_WEIGHT * bal)[0])
    out: IntArray = maps[best].copy()
    return out


# --------------------------------------------------------------------------- heuristic search


def _vnode_order(g: _Guest) -> IntArray:
    """Heaviest vnodes first: they constrain distortion and capacity the most."""
    cw = g.cw / g.total_cw if g.total_cw > 0 else g.cw
    dm = g.demand / g.total_demand if g.total_demand > 0 else g.demand
    out: IntArray = np.argsort(-(cw + dm), kind="stable").astype(np.int64)
    return out


def _greedy(g: _Guest, h: _Host, starts: IntArray) -> IntArray:
    """One greedy construction per start pnode, all starts advanced together as arrays."""
    order = _vnode_order(g)
    s, v, p = starts.shape[0], order.shape[0], h.pdist.shape[0]
    maps = np.zeros((s, v), dtype=np.int64)
    mem = np.zeros((s, p))
    ncpu = np.zeros((s, p))
    ddiag = np.diagonal(h.pdist)
    rows = np.arange(s)
    for k in range(v):
        a = int(order[k])
        if k == 0:
            choice = starts
        else:
            placed = order[:k]
            mp = maps[:, placed]  # (S, k)
            dr = h.pdist[:, mp]  # (P, S, k): D[p, m_u]
            dc = h.pdist[mp, :]  # (S, k, P): D[m_u, p]
            t1 = np.einsum("u,psu->sp", g.w[a, placed], np.abs(g.vdist[a, placed] - dr))
            t2 = np.einsum(
                "u,sup->sp", g.w[placed, a], np.abs(g.vdist[placed, a][None, :, None] - dc)
            )
            dist = t1 + t2 + g.w[a, a] * np.abs(g.vdist[a, a] - ddiag)[None, :]
            d_over = _overflow(mem + g.demand[a], h.free) - _overflow(mem, h.free)
            d_cpu = _cpu_contrib(ncpu + g.cw[a], h.load, h.cpus) - _cpu_contrib(
                ncpu, h.load, h.cpus
            )
            d_mem = _mem_contrib(mem + g.demand[a], h.free) - _mem_contrib(mem, h.free)
            key = (
                _OVERFLOW_KEY * d_over + dist + BALANCE_WEIGHT * _balance_from_sums(g, d_cpu, d_mem)
            )
            choice = np.argmin(key, axis=1).astype(np.int64)
        maps[:, a] = choice
        mem[rows, choice] += g.demand[a]
        ncpu[rows, choice] += g.cw[a]
    return maps


@dataclass(frozen=True)
class _Eval:
    overflow: float
    score: float

    def better_than(self, other: _Eval) -> bool:
        if self.overflow != other.overflow:
            return self.overflow < other.overflow
        return self.score < other.score - _TOL


def _evaluate(g: _Guest, h: _Host, maps: IntArray) -> tuple[FloatArray, FloatArray]:
    """Overflow and score of candidate mappings on one host: two (C,) arrays."""
    dist = _distortions(maps, g, h.pdist)
    over, bal = _host_terms(g, maps, h.free[None], h.cpus[None], h.load[None])
    return over[0], dist + BALANCE_WEIGHT * bal[0]


def _local_search(g: _Guest, h: _Host, start: IntArray, max_iters: int) -> tuple[IntArray, int]:
    """Steepest descent over all single-vnode moves and all pair swaps, priced as arrays.

    Move and swap deltas are exact (derived from the per-vnode cost ``G[a, p]`` of homing vnode
    ``a`` on ``p`` with the others fixed), so one iteration costs O(V^2 P) array work.
    Returns the mapping and the number of iterations used.
    """
    m = start.copy()
    v, p = m.shape[0], h.free.shape[0]
    w, vd, pd = g.w, g.vdist, h.pdist
    wt, vdt = w.T, vd.T
    wdiag, vdiag, ddiag = np.diagonal(w), np.diagonal(vd), np.diagonal(pd)
    ar = np.arange(v)
    upper = np.triu(np.ones((v, v), dtype=bool), k=1)
    self_ok = wdiag[:, None] * np.abs(vdiag[:, None] - ddiag[None, :])  # (V, P)
    mem = np.bincount(m, weights=g.demand, minlength=p).astype(np.float64)
    ncpu = np.bincount(m, weights=g.cw, minlength=p).astype(np.float64)
    used = 0
    for _ in range(max_iters):
        used += 1
        dr = pd[:, m]  # (P, V): D[p, m_u]
        dc = pd[m, :].T  # (P, V): D[m_u, p]
        t1 = np.einsum("au,apu->ap", w, np.abs(vd[:, None, :] - dr[None, :, :]))
        t2 = np.einsum("au,apu->ap", wt, np.abs(vdt[:, None, :] - dc[None, :, :]))
        wrong_self = wdiag[:, None] * (
            np.abs(vdiag[:, None] - dr.T) + np.abs(vdiag[:, None] - dc.T)
        )
        cost = t1 + t2 - wrong_self + self_ok  # (V, P)
        cur = cost[ar, m]

        # single-vnode moves a -> q
        d_dist_mv = cost - cur[:, None]
        src = m
        dem, cw = g.demand[:, None], g.cw[:, None]
        f_src, f_dst = h.free[src][:, None], h.free[None, :]
        d_over_mv = (
            _overflow(mem[None, :] + dem, f_dst)
            - _overflow(mem[None, :], f_dst)
            + _overflow(mem[src][:, None] - dem, f_src)
            - _overflow(mem[src][:, None], f_src)
        )
        l_src, c_src = h.load[src][:, None], h.cpus[src][:, None]
        l_dst, c_dst = h.load[None, :], h.cpus[None, :]
        d_cpu_mv = (
            _cpu_contrib(ncpu[None, :] + cw, l_dst, c_dst)
            - _cpu_contrib(ncpu[None, :], l_dst, c_dst)
            + _cpu_contrib(ncpu[src][:, None] - cw, l_src, c_src)
            - _cpu_contrib(ncpu[src][:, None], l_src, c_src)
        )
        d_mem_mv = (
            _mem_contrib(mem[None, :] + dem, f_dst)
            - _mem_contrib(mem[None, :], f_dst)
            + _mem_contrib(mem[src][:, None] - dem, f_src)
            - _mem_contrib(mem[src][:, None], f_src)
        )
        key_mv = (
            _OVERFLOW_KEY * d_over_mv
            + d_dist_mv
            + BALANCE_WEIGHT * _balance_from_sums(g, d_cpu_mv, d_mem_mv)
        )
        key_mv[ar, m] = np.inf

        # pair swaps a <-> b
        g_ab = cost[:, m]  # G[a, m_b]
        dmm = pd[m][:, m]  # D[m_a, m_b]
        dd = ddiag[m]
        s1 = w * np.abs(vd - dd[None, :]) + wt * np.abs(vdt - dd[None, :])
        s2 = w * np.abs(vd - dd[:, None]) + wt * np.abs(vdt - dd[:, None])
        pair_old = w * np.abs(vd - dmm) + wt * np.abs(vdt - dmm.T)
        pair_new = w * np.abs(vd - dmm.T) + wt * np.abs(vdt - dmm)
        d_dist_sw = g_ab + g_ab.T - cur[:, None] - cur[None, :] - s1 - s2 + pair_old + pair_new
        delta_dem = g.demand[None, :] - g.demand[:, None]  # d_b - d_a lands on m_a
        delta_cw = g.cw[None, :] - g.cw[:, None]
        ma, mb = m[:, None], m[None, :]
        fa, fb = h.free[ma], h.free[mb]
        memab, memb = mem[ma], mem[mb]
        d_over_sw = (
            _overflow(memab + delta_dem, fa)
            - _overflow(memab, fa)
            + _overflow(memb - delta_dem, fb)
            - _overflow(memb, fb)
        )
        na, nb = ncpu[ma], ncpu[mb]
        la, ca, lb, cb = h.load[ma], h.cpus[ma], h.load[mb], h.cpus[mb]
        d_cpu_sw = (
            _cpu_contrib(na + delta_cw, la, ca)
            - _cpu_contrib(na, la, ca)
            + _cpu_contrib(nb - delta_cw, lb, cb)
            - _cpu_contrib(nb, lb, cb)
        )
        d_mem_sw = (
            _mem_contrib(memab + delta_dem, fa)
            - _mem_contrib(memab, fa)
            + _mem_contrib(memb - delta_dem, fb)
            - _mem_contrib(memb, fb)
        )
        key_sw = (
            _OVERFLOW_KEY * d_over_sw
            + d_dist_sw
            + BALANCE_WEIGHT * _balance_from_sums(g, d_cpu_sw, d_mem_sw)
        )
        key_sw = np.where(upper & (ma != mb), key_sw, np.inf)

        i_mv = int(np.argmin(key_mv))
        i_sw = int(np.argmin(key_sw))
        best_mv, best_sw = float(key_mv.flat[i_mv]), float(key_sw.flat[i_sw])
        if min(best_mv, best_sw) >= -_TOL:
            break
        if best_mv <= best_sw:
            a, q = divmod(i_mv, p)
            old = int(m[a])
            mem[old] -= g.demand[a]
            ncpu[old] -= g.cw[a]
            mem[q] += g.demand[a]
            ncpu[q] += g.cw[a]
            m[a] = q
        else:
            a, b = divmod(i_sw, v)
            pa, pb = int(m[a]), int(m[b])
            mem[pa] += g.demand[b] - g.demand[a]
            mem[pb] += g.demand[a] - g.demand[b]
            ncpu[pa] += g.cw[b] - g.cw[a]
            ncpu[pb] += g.cw[a] - g.cw[b]
            m[a], m[b] = pb, pa
    return m, used


def _heuristic_pool(g: _Guest, h: _Host, budget_evals: int) -> tuple[IntArray, int]:
    """Greedy mappings from every start pnode, the best few polished by local search.

    Returns all distinct candidates (K, V) and the index of the best one on this host; the pool
    doubles as rank_hosts' shortlist for a host topology.
    """
    v, p = g.demand.shape[0], h.free.shape[0]
    starts = np.unique(np.linspace(0, p - 1, num=min(p, _MAX_STARTS)).round().astype(np.int64))
    per_iter = v * p + v * (v - 1) // 2
    remaining = budget_evals - starts.shape[0] * p * v
    greedy = _greedy(g, h, starts)
    over, score = _evaluate(g, h, greedy)
    ranked = np.lexsort((score, over))
    found: list[IntArray] = [greedy]
    best_m = greedy[ranked[0]]
    best_e = _Eval(float(over[ranked[0]]), float(score[ranked[0]]))
    seen: set[bytes] = set()
    for idx in ranked:
        if remaining <= per_iter or len(seen) >= _POLISH:
            break
        key = greedy[idx].tobytes()
        if key in seen:
            continue
        seen.add(key)
        m, used = _local_search(g, h, greedy[idx], max(1, remaining // per_iter))
        remaining -= used * per_iter
        found.append(m[None])
        o, s = _evaluate(g, h, m[None])
        e = _Eval(float(o[0]), float(s[0]))
        if e.better_than(best_e):
            best_m, best_e = m, e
    # Iterated local search: perturb the incumbent with a few random moves and swaps.
    rng = np.random.default_rng(_SEED)
    kicks = max(2, v // 8)
    fails = 0
    while remaining > per_iter and fails < 8:
        if best_e.overflow == 0 and best_e.score <= BALANCE_WEIGHT:
            break  # distortion is already zero: perturbing can only shuffle balance
        trial = best_m.copy()
        for _ in range(kicks):
            if v > 1 and rng.random() < 0.5:
                a, b = rng.choice(v, size=2, replace=False)
                trial[a], trial[b] = trial[b], trial[a]
            else:
                trial[rng.integers(v)] = rng.integers(p)
        m, used = _local_search(g, h, trial, max(1, remaining // per_iter))
        remaining -= used * per_iter
        found.append(m[None])
        o, s = _evaluate(g, h, m[None])
        e = _Eval(float(o[0]), float(s[0]))
        if e.better_than(best_e):
            best_m, best_e, fails = m, e, 0
        else:
            fails += 1
    pool = np.unique(np.concatenate(found, axis=0), axis=0)
    best = int(np.flatnonzero((pool == best_m[None]).all(axis=1))[0])
    return pool, best


def _search(g: _Guest, h: _Host, budget_evals: int) -> IntArray:
    v, p = g.demand.shape[0], h.free.shape[0]
    if p**v <= min(EXACT_LIMIT, max(budget_evals, 1)) or p == 1:
        return _exact(g, h)
    pool, best = _heuristic_pool(g, h, budget_evals)
    out: IntArray = pool[best].copy()
    return out


# --------------------------------------------------------------------------- results


def _fmt_mib(mib: int) -> str:
    """Always MiB: the unit of every figure in the API, so a reason can be compared to them."""
    return f"{mib} MiB"


def _finish(g: _Guest, h: _Host, mapping: IntArray) -> Placement:
    """Turn a chosen mapping into a Placement with exactly recomputed figures."""
    need = int(g.demand_int.sum())
    have = int(h.free.sum())
    if h.free.shape[0] == 0:
        return Placement(False, mapping, 0.0, 0.0, False, "host has no NUMA nodes")
    over, bal = _host_terms(g, mapping[None], h.free[None], h.cpus[None], h.load[None])
    distortion = _exact_distortion(g, h, mapping)
    score = distortion + BALANCE_WEIGHT * float(bal[0, 0])
    if need > have:
        reason = f"needs {_fmt_mib(need)}, host has {_fmt_mib(have)} free"
        return Placement(False, mapping, distortion, score, False, reason)
    return Placement(True, mapping, distortion, score, bool(over[0, 0] > 0), "")


def place(
    demand_mib: ArrayLike,
    vcpus: ArrayLike,
    vdist: ArrayLike,
    free_mib: ArrayLike,
    cpus: ArrayLike,
    pdist: ArrayLike,
    load_vcpus: ArrayLike,
    *,
    budget_evals: int = DEFAULT_BUDGET_EVALS,
) -> Placement:
    """Home each vnode of a new domain on a pnode of one host.

    Capacity first, distortion second, balance last. When no mapping fits every vnode on its
    home pnode but the host has enough free memory in total, the best mapping is still returned
    with ``spread=True``: memory will be spread to other pnodes by ``distribute``.
    """
    g = _make_guest(demand_mib, vcpus, vdist)
    h = _make_host(free_mib, cpus, pdist, load_vcpus)
    v = g.demand.shape[0]
    if h.free.shape[0] == 0:
        return Placement(
            False, np.zeros(v, dtype=np.int64), 0.0, 0.0, False, "host has no NUMA nodes"
        )
    return _finish(g, h, _search(g, h, budget_evals))


# --------------------------------------------------------------------------- ranking


def _topology_pool(
    g: _Guest, pdist_int: IntArray, pool_size: int, budget_evals: int
) -> tuple[IntArray, FloatArray, float]:
    """Shortlist of mappings for a host topology, with their distortions and a bound.

    Returns (K, V) mappings, their distortions and the least distortion of any mapping left out
    (``inf`` when nothing was left out, ``nan`` when the shortlist is heuristic).
    """
    p, v = pdist_int.shape[0], g.demand.shape[0]
    if p**v <= EXACT_LIMIT or p == 1:
        maps = _all_mappings(v, p)
        dist = _distortions(maps, g, pdist_int.astype(np.float64))
        if maps.shape[0] <= pool_size:
            keep = np.argsort(dist, kind="stable")
            return maps[keep], dist[keep], float("inf")
        part = np.argpartition(dist, pool_size)
        keep, rest = part[:pool_size], part[pool_size:]
        keep = keep[np.lexsort((keep, dist[keep]))]
        return maps[keep], dist[keep], float(dist[rest].min())
    # Capacity-blind host of this shape: the shortlist must not depend on one host's state.
    blind = _Host(
        free=np.full(p, g.total_demand + 1.0),
        cpus=np.ones(p),
        load=np.zeros(p),
        pdist=pdist_int.astype(np.float64),
        pdist_int=pdist_int,
    )
    pool, _ = _heuristic_pool(g, blind, budget_evals)
    dist = _distortions(pool, g, blind.pdist)
    keep = np.argsort(dist, kind="stable")[:pool_size]
    return pool[keep], dist[keep], float("nan")


def rank_hosts(
    demand_mib: ArrayLike,
    vcpus: ArrayLike,
    vdist: ArrayLike,
    hosts: Sequence[HostArrays],
    *,
    budget_evals: int = DEFAULT_BUDGET_EVALS,
    pool_size: int = DEFAULT_POOL_SIZE,
) -> Ranking:
    """Place one domain on every host of a cluster and order the hosts best first.

    Hosts are grouped by topology (pnode count and distances). Per group a shortlist of mappings
    is built once and scored against every host of the group in one broadcast pass; only hosts
    the shortlist cannot serve well are searched on their own:

    * a host where no shortlisted mapping fits although the host has room in total;
    * a host whose best fitting shortlisted mapping is worse in distortion than a mapping left
      out of an exact shortlist (so the answer stays exact on small search spaces).

    Balance among mappings of equal distortion is optimised within the shortlist only.
    Order: feasible first, then not spread, then score, then input position.
    """
    g = _make_guest(demand_mib, vcpus, vdist)
    v = g.demand.shape[0]
    n_hosts = len(hosts)
    results: list[Placement | None] = [None] * n_hosts
    exhaustive = np.zeros(n_hosts, dtype=bool)
    groups: dict[tuple[int, bytes], list[int]] = {}
    for i, host in enumerate(hosts):
        d = np.asarray(host.pdist, dtype=np.int64)
        groups.setdefault((d.shape[0], d.tobytes()), []).append(i)

    for (p, _), members in groups.items():
        idx = np.asarray(members, dtype=np.int64)
        if p == 0:
            for i in members:
                results[i] = Placement(
                    False,
                    np.zeros(v, dtype=np.int64),
                    0.0,
                    0.0,
                    False,
                    "host has no NUMA nodes",
                )
            continue
        hs = [
            _make_host(hosts[i].free_mib, hosts[i].cpus, hosts[i].pdist, hosts[i].load_vcpus)
            for i in members
        ]
        pdist_int = hs[0].pdist_int
        maps, dist, bound = _topology_pool(g, pdist_int, pool_size, budget_evals)
        free = np.stack([h.free for h in hs])
        over, bal = _host_terms(
            g, maps, free, np.stack([h.cpus for h in hs]), np.stack([h.load for h in hs])
        )
        score = dist[None, :] + BALANCE_WEIGHT * bal
        best = _best_lexicographic(over, score)
        rows = np.arange(idx.shape[0])
        best_over = over[rows, best]
        best_dist = dist[best]
        room = free.sum(axis=1) >= g.total_demand
        searched = np.zeros(idx.shape[0], dtype=bool)
        chosen: dict[int, IntArray] = {}
        if np.isnan(bound):
            # Heuristic shortlist: hosts whose state spoils it get a capacity-aware greedy,
            # batched over all of them and a few start pnodes each (the most free ones).
            weak = room & ((best_over > 0) | (best_dist > dist.min() + BALANCE_WEIGHT))
            for r, m in _batched_greedy(g, hs, np.flatnonzero(weak), maps[best]).items():
                chosen[r] = m
            still = [r for r, m in chosen.items() if _fits(g, hs[r], m) is False]
            for r in still:
                chosen[r] = _search(g, hs[r], budget_evals)
                searched[r] = True
        else:
            # Exact shortlist: search on its own any host that a left-out mapping may serve
            # better, so small search spaces stay exact.
            refine = room & ((best_over > 0) | (best_dist > bound + _TOL))
            for row in np.flatnonzero(refine).tolist():
                chosen[row] = _search(g, hs[row], budget_evals)
                searched[row] = True
        exact_dist = {int(k): _exact_distortion(g, hs[0], maps[k]) for k in np.unique(best)}
        for r, i in enumerate(members):
            h = hs[r]
            if r in chosen:
                pl = _finish(g, h, chosen[r])
                results[i] = pl
                exhaustive[i] = bool(searched[r])
                continue
            k = int(best[r])
            d_exact = exact_dist[k]
            sc = d_exact + BALANCE_WEIGHT * float(bal[r, k])
            mapping = maps[k].copy()
            exhaustive[i] = not np.isnan(bound)
            if not room[r]:
                need, have = int(g.demand_int.sum()), int(h.free.sum())
                reason = f"needs {_fmt_mib(need)}, host has {_fmt_mib(have)} free"
                results[i] = Placement(False, mapping, d_exact, sc, False, reason)
            else:
                results[i] = Placement(True, mapping, d_exact, sc, bool(best_over[r] > 0), "")

    order = _order(results)
    # The hosts that will actually be chosen deserve a search of their own.
    top = [int(i) for i in order[:_REFINE_TOP] if not exhaustive[int(i)]]
    for i in top:
        host = hosts[i]
        h = _make_host(host.free_mib, host.cpus, host.pdist, host.load_vcpus)
        old = results[i]
        assert old is not None
        new = _finish(g, h, _search(g, h, budget_evals))
        if (new.spread, new.score) < (old.spread, old.score):
            results[i] = new
    if top:
        order = _order(results)
    done = [r for r in results if r is not None]
    return Ranking(placements=tuple(done), order=order)


def _order(results: Sequence[Placement | None]) -> IntArray:
    done = [r for r in results if r is not None]
    assert len(done) == len(results)
    n = len(done)
    feasible = np.array([r.feasible for r in done], dtype=bool)
    spread = np.array([r.spread for r in done], dtype=bool)
    scores = np.array([r.score for r in done], dtype=np.float64)
    out: IntArray = np.lexsort((np.arange(n), scores, spread, ~feasible)).astype(np.int64)
    return out


def _fits(g: _Guest, h: _Host, mapping: IntArray) -> bool:
    mem = np.bincount(mapping, weights=g.demand, minlength=h.free.shape[0])
    return bool(np.all(mem <= h.free))


def _batched_greedy(
    g: _Guest, hs: Sequence[_Host], rows: IntArray, fallback: IntArray
) -> dict[int, IntArray]:
    """Capacity-aware greedy for many hosts of one topology in one vectorized construction.

    Each host gets a few starts (its most free pnodes); the greedy broadcasts per-row host
    arrays, so all hosts advance together. A host keeps its shortlist mapping (``fallback``
    row) when that is no worse.
    """
    if rows.shape[0] == 0:
        return {}
    p = hs[0].free.shape[0]
    n_starts = min(p, _BATCH_STARTS)
    free = np.stack([hs[int(r)].free for r in rows])
    cpus = np.stack([hs[int(r)].cpus for r in rows])
    load = np.stack([hs[int(r)].load for r in rows])
    starts = np.argsort(-free, axis=1, kind="stable")[:, :n_starts]  # (B, S)
    rep = np.repeat(np.arange(rows.shape[0]), n_starts)
    batch = _Host(
        free=free[rep],
        cpus=cpus[rep],
        load=load[rep],
        pdist=hs[0].pdist,
        pdist_int=hs[0].pdist_int,
    )
    maps = _greedy(g, batch, starts.ravel().astype(np.int64))
    cand = np.concatenate([maps, fallback[rows]], axis=0)
    owner = np.concatenate([rep, np.arange(rows.shape[0])])
    over, score = _rowwise(g, cand, hs[0].pdist, free[owner], cpus[owner], load[owner])
    out: dict[int, IntArray] = {}
    ranked = np.lexsort((score, over, owner))
    firsts = ranked[np.r_[True, owner[ranked][1:] != owner[ranked][:-1]]]
    for j in firsts:
        out[int(rows[owner[j]])] = cand[j].copy()
    return out


def _rowwise(
    g: _Guest,
    maps: IntArray,
    pdist: FloatArray,
    free: FloatArray,
    cpus: FloatArray,
    load: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Overflow and score of row i's mapping on row i's host state: two (B,) arrays."""
    p = free.shape[1]
    dist = _distortions(maps, g, pdist)
    mem = _pnode_sums(maps, g.demand, p)
    ncpu = _pnode_sums(maps, g.cw, p)
    over: FloatArray = _overflow(mem, free).sum(axis=1)
    bal = _balance_from_sums(
        g, _cpu_contrib(ncpu, load, cpus).sum(axis=1), _mem_contrib(mem, free).sum(axis=1)
    )
    return over, dist + BALANCE_WEIGHT * bal
