"""Search for one host's best mapping of a guest's vnodes onto its pnodes.

Search is exact (every mapping scored in one vectorized pass) when ``P ** V`` is small and a
bounded heuristic beyond: a multi-start greedy construction vectorized over its starts, then a
local search that prices every single-vnode move and every pair swap as arrays each iteration,
then a few seeded perturbations while the evaluation budget lasts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.engine.placement.scoring import (
    _OVERFLOW_KEY,
    _TOL,
    BALANCE_WEIGHT,
    BoolArray,
    FloatArray,
    IntArray,
    _balance_from_sums,
    _best_lexicographic,
    _cpu_contrib,
    _distortions,
    _Guest,
    _Host,
    _host_terms,
    _mem_contrib,
    _overflow,
)

EXACT_LIMIT = 50_000
"""Largest number of candidate mappings (P ** V) that is enumerated exhaustively."""

DEFAULT_BUDGET_EVALS = 300_000
"""Candidate evaluations the heuristic may spend; 32 vnodes on 64 pnodes stay well under 1 s."""

_MAX_STARTS = 64
_POLISH = 4
_SEED = 0x5EED

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


@dataclass(frozen=True, kw_only=True)
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


@dataclass(frozen=True, kw_only=True)
class _Fixed:
    """What the local search reuses every iteration: transposes, diagonals and the self term.

    ``w``/``vd``/``pd``: guest weights, virtual and physical distances (float); ``self_ok`` is
    vnode a's own-pool cost when homed on p with its memory there, (V, P)."""

    w: FloatArray
    vd: FloatArray
    pd: FloatArray
    wt: FloatArray
    vdt: FloatArray
    wdiag: FloatArray
    vdiag: FloatArray
    ddiag: FloatArray
    upper: BoolArray
    self_ok: FloatArray


def _fixed_terms(g: _Guest, h: _Host) -> _Fixed:
    """The iteration-invariant pieces of ``_local_search``, computed once per search."""
    v = g.demand.shape[0]
    w, vd, pd = g.w, g.vdist, h.pdist
    wdiag, vdiag, ddiag = np.diagonal(w), np.diagonal(vd), np.diagonal(pd)
    return _Fixed(
        w=w,
        vd=vd,
        pd=pd,
        wt=w.T,
        vdt=vd.T,
        wdiag=wdiag,
        vdiag=vdiag,
        ddiag=ddiag,
        upper=np.triu(np.ones((v, v), dtype=bool), k=1),
        self_ok=wdiag[:, None] * np.abs(vdiag[:, None] - ddiag[None, :]),
    )


def _home_costs(fx: _Fixed, m: IntArray) -> FloatArray:
    """(V, P) cost ``G[a, p]`` of homing vnode ``a`` on ``p`` with the other vnodes fixed."""
    dr = fx.pd[:, m]  # (P, V): D[p, m_u]
    dc = fx.pd[m, :].T  # (P, V): D[m_u, p]
    t1 = np.einsum("au,apu->ap", fx.w, np.abs(fx.vd[:, None, :] - dr[None, :, :]))
    t2 = np.einsum("au,apu->ap", fx.wt, np.abs(fx.vdt[:, None, :] - dc[None, :, :]))
    wrong_self = fx.wdiag[:, None] * (
        np.abs(fx.vdiag[:, None] - dr.T) + np.abs(fx.vdiag[:, None] - dc.T)
    )
    out: FloatArray = t1 + t2 - wrong_self + fx.self_ok
    return out


def _move_keys(
    g: _Guest, h: _Host, m: IntArray, cost: FloatArray, mem: FloatArray, ncpu: FloatArray
) -> FloatArray:
    """(V, P) search key of moving vnode ``a`` to pnode ``q`` (inf where ``q`` is its home).

    ``mem``/``ncpu``: the guest's MiB and vCPUs per pnode under mapping ``m``."""
    ar = np.arange(m.shape[0])
    cur = cost[ar, m]
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
    key_mv: FloatArray = (
        _OVERFLOW_KEY * d_over_mv
        + d_dist_mv
        + BALANCE_WEIGHT * _balance_from_sums(g, d_cpu_mv, d_mem_mv)
    )
    key_mv[ar, m] = np.inf
    return key_mv


def _swap_distortion(fx: _Fixed, m: IntArray, cost: FloatArray) -> FloatArray:
    """(V, V) exact distortion change of swapping the homes of vnodes ``a`` and ``b``."""
    w, vd, wt, vdt = fx.w, fx.vd, fx.wt, fx.vdt
    cur = cost[np.arange(m.shape[0]), m]
    g_ab = cost[:, m]  # G[a, m_b]
    dmm = fx.pd[m][:, m]  # D[m_a, m_b]
    dd = fx.ddiag[m]
    s1 = w * np.abs(vd - dd[None, :]) + wt * np.abs(vdt - dd[None, :])
    s2 = w * np.abs(vd - dd[:, None]) + wt * np.abs(vdt - dd[:, None])
    pair_old = w * np.abs(vd - dmm) + wt * np.abs(vdt - dmm.T)
    pair_new = w * np.abs(vd - dmm.T) + wt * np.abs(vdt - dmm)
    out: FloatArray = g_ab + g_ab.T - cur[:, None] - cur[None, :] - s1 - s2 + pair_old + pair_new
    return out


def _swap_keys(
    g: _Guest,
    h: _Host,
    fx: _Fixed,
    m: IntArray,
    cost: FloatArray,
    mem: FloatArray,
    ncpu: FloatArray,
) -> FloatArray:
    """(V, V) search key of swapping vnodes ``a < b`` on different pnodes (inf elsewhere)."""
    d_dist_sw = _swap_distortion(fx, m, cost)
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
    out: FloatArray = np.where(fx.upper & (ma != mb), key_sw, np.inf)
    return out


def _apply_move(g: _Guest, m: IntArray, mem: FloatArray, ncpu: FloatArray, a: int, q: int) -> None:
    """Rehome vnode ``a`` on pnode ``q``, updating the per-pnode sums in place."""
    old = int(m[a])
    mem[old] -= g.demand[a]
    ncpu[old] -= g.cw[a]
    mem[q] += g.demand[a]
    ncpu[q] += g.cw[a]
    m[a] = q


def _apply_swap(g: _Guest, m: IntArray, mem: FloatArray, ncpu: FloatArray, a: int, b: int) -> None:
    """Exchange the homes of vnodes ``a`` and ``b``, updating the per-pnode sums in place."""
    pa, pb = int(m[a]), int(m[b])
    mem[pa] += g.demand[b] - g.demand[a]
    mem[pb] += g.demand[a] - g.demand[b]
    ncpu[pa] += g.cw[b] - g.cw[a]
    ncpu[pb] += g.cw[a] - g.cw[b]
    m[a], m[b] = pb, pa


def _local_search(g: _Guest, h: _Host, start: IntArray, max_iters: int) -> tuple[IntArray, int]:
    """Steepest descent over all single-vnode moves and all pair swaps, priced as arrays.

    Move and swap deltas are exact (derived from the per-vnode cost ``G[a, p]`` of homing vnode
    ``a`` on ``p`` with the others fixed), so one iteration costs O(V^2 P) array work.
    Returns the mapping and the number of iterations used.
    """
    m = start.copy()
    v, p = m.shape[0], h.free.shape[0]
    fx = _fixed_terms(g, h)
    mem = np.bincount(m, weights=g.demand, minlength=p).astype(np.float64)
    ncpu = np.bincount(m, weights=g.cw, minlength=p).astype(np.float64)
    used = 0
    for _ in range(max_iters):
        used += 1
        cost = _home_costs(fx, m)
        key_mv = _move_keys(g, h, m, cost, mem, ncpu)
        key_sw = _swap_keys(g, h, fx, m, cost, mem, ncpu)
        i_mv = int(np.argmin(key_mv))
        i_sw = int(np.argmin(key_sw))
        best_mv, best_sw = float(key_mv.flat[i_mv]), float(key_sw.flat[i_sw])
        if min(best_mv, best_sw) >= -_TOL:
            break
        if best_mv <= best_sw:
            _apply_move(g, m, mem, ncpu, *divmod(i_mv, p))
        else:
            _apply_swap(g, m, mem, ncpu, *divmod(i_sw, v))
    return m, used


def _heuristic_pool(g: _Guest, h: _Host, budget_evals: int) -> tuple[IntArray, int]:
    """Greedy mappings from every start pnode, the best few polished by local search.

    Returns all distinct candidates (K, V) and the index of the best one on this host; the pool
    doubles as rank_cluster's shortlist for a host topology.
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
    best_e = _Eval(overflow=float(over[ranked[0]]), score=float(score[ranked[0]]))
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
        e = _Eval(overflow=float(o[0]), score=float(s[0]))
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
        e = _Eval(overflow=float(o[0]), score=float(s[0]))
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
