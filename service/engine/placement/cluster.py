"""Ranking of the hosts of a cluster for one domain: ``rank_cluster`` over ``ClusterArrays``.

Hosts of one topology share a shortlist of mappings, scored against all of them at once; the
best few hosts whose answer is not known optimal get ``place``'s own search.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from service.engine.memo import Memo
from service.engine.placement.host import HostArrays, Placement, _finish, _fmt_mib
from service.engine.placement.scoring import (
    _CHUNK_ELEMS,
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
    _make_guest,
    _make_host,
    _mem_contrib,
    _overflow,
    _pnode_sums,
)
from service.engine.placement.search import (
    _SEED,
    DEFAULT_BUDGET_EVALS,
    EXACT_LIMIT,
    _all_mappings,
    _greedy,
    _heuristic_pool,
    _search,
)

DEFAULT_POOL_SIZE = 256
"""Mappings per distinct host topology that rank_cluster scores against every host of it."""
_BATCH_STARTS = 4
_REFINE_TOP = 8
# Kept searches: shortlists per (guest shape, topology), and the in-depth search of a host's
# exact state (a host unchanged since the last request for the same shape is not searched again).
SHORTLISTS: Memo[tuple[NDArray[np.int64], NDArray[np.float64], float]] = Memo(256)
SEARCHES: Memo[Placement] = Memo(1024)

# --------------------------------------------------------------------------- ranking


def _topology_pool(
    g: _Guest, pdist_int: IntArray, pool_size: int, budget_evals: int, *, sample: bool = False
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
    if sample:
        pool = np.unique(np.concatenate([pool, _sampled_pool(g, pdist_int, _POOL_SAMPLES)]), axis=0)
    dist = _distortions(pool, g, blind.pdist)
    keep = np.argsort(dist, kind="stable")[:pool_size]
    return pool[keep], dist[keep], float("nan")


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


# --------------------------------------------------------------------------- cluster ranking

_SPREAD_KEY = 1e6
"""Added to the sort key of a spread placement; larger than any score (distortion <= 244)."""

_INFEASIBLE_KEY = 2e6
"""Added to the sort key of an infeasible placement, so it sorts after every spread one."""


@dataclass(frozen=True, kw_only=True)
class ClusterArrays:
    """Every host of a cluster as (hosts x pnodes) matrices, zero-padded past a host's pnodes.

    Hosts of one topology share a ``shape`` index into ``shapes`` (their SLITs): placement
    builds candidate mappings once per shape and scores them against all its hosts at once.
    """

    free_mib: IntArray
    cpus: IntArray
    load_vcpus: IntArray
    shape: IntArray
    shapes: tuple[IntArray, ...]

    def __post_init__(self) -> None:
        h = self.shape.shape[0]
        width = max((s.shape[0] for s in self.shapes), default=0)
        for name in ("free_mib", "cpus", "load_vcpus"):
            arr = getattr(self, name)
            if arr.ndim != 2 or arr.shape[0] != h or arr.shape[1] < width:
                raise ValueError(f"{name} must be (hosts, >= {width}), got {arr.shape}")
            if np.any(arr < 0):
                raise ValueError(f"{name} must not be negative")
        for s in self.shapes:
            if s.ndim != 2 or s.shape[0] != s.shape[1]:
                raise ValueError("every shape must be a square distance matrix")
        if h and (self.shape.min() < 0 or self.shape.max() >= len(self.shapes)):
            raise ValueError("shape indices must point into shapes")

    @property
    def n_hosts(self) -> int:
        return int(self.shape.shape[0])


def cluster_arrays(*, hosts: Sequence[HostArrays]) -> ClusterArrays:
    """Pack per-host arrays into the padded matrices ``rank_cluster`` takes (tests, benches)."""
    keys: dict[bytes, int] = {}
    shapes: list[IntArray] = []
    shape = np.zeros(len(hosts), dtype=np.int64)
    for i, host in enumerate(hosts):
        d = np.asarray(host.pdist, dtype=np.int64)
        key = d.shape[0].to_bytes(2, "little") + d.tobytes()
        if key not in keys:
            keys[key] = len(shapes)
            shapes.append(d)
        shape[i] = keys[key]
    width = max((s.shape[0] for s in shapes), default=0)
    mats = [np.zeros((len(hosts), width), dtype=np.int64) for _ in range(3)]
    for i, host in enumerate(hosts):
        for mat, arr in zip(mats, (host.free_mib, host.cpus, host.load_vcpus), strict=True):
            mat[i, : len(arr)] = arr
    return ClusterArrays(
        free_mib=mats[0], cpus=mats[1], load_vcpus=mats[2], shape=shape, shapes=tuple(shapes)
    )


@dataclass(frozen=True, kw_only=True)
class ClusterRanking:
    """Per host (input order): the placement found, as arrays; ``order``: the best ``limit``
    host indices, best first (feasible, then not spread, then score, then input position)."""

    order: IntArray
    feasible: BoolArray
    spread: BoolArray
    score: FloatArray
    distortion: FloatArray
    mapping: IntArray
    need_mib: int
    free_total_mib: IntArray

    def placement(self, i: int) -> Placement:
        """Host ``i``'s result as the ``Placement`` that ``place`` would return."""
        if not self.feasible[i]:
            have = int(self.free_total_mib[i])
            reason = f"needs {_fmt_mib(self.need_mib)}, host has {_fmt_mib(have)} free"
        else:
            reason = ""
        return Placement(
            feasible=bool(self.feasible[i]),
            mapping=self.mapping[i].copy(),
            distortion=float(self.distortion[i]),
            score=float(self.score[i]),
            spread=bool(self.spread[i]),
            reason=reason,
        )


_MAX_LEVELS = 64
"""Most distinct per-pnode loads a shortlist may have for ``_host_terms_levels``."""

_POOL_SAMPLES = 256
"""Capacity-randomized greedy constructions that widen a heuristic shape's shortlist."""


def _host_terms_levels(
    g: _Guest, maps: IntArray, free: FloatArray, cpus: FloatArray, load: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """``_host_terms`` as two matrix products. Every term is a sum over pnodes of f(level, host
    pnode), where the level (MiB or vCPUs a mapping puts on a pnode) takes few distinct values.
    So f is evaluated per level on the (hosts x pnodes) matrix only, and one BLAS product with
    the (levels*pnodes x mappings) indicator sums it for every mapping: H*P*L work plus the
    product, instead of H*K*P per term."""
    p = free.shape[1]
    mem = _pnode_sums(maps, g.demand, p)
    ncpu = _pnode_sums(maps, g.cw, p)
    mem_levels = np.unique(mem[mem > 0])
    cpu_levels = np.unique(ncpu[ncpu > 0])
    if mem_levels.shape[0] + cpu_levels.shape[0] > _MAX_LEVELS:
        return _host_terms(g, maps, free, cpus, load)
    m_ind = (mem.T[None, :, :] == mem_levels[:, None, None]).reshape(-1, maps.shape[0])
    c_ind = (ncpu.T[None, :, :] == cpu_levels[:, None, None]).reshape(-1, maps.shape[0])
    m_lvl = mem_levels[None, :, None]  # (1, Lm, 1) against (H, 1, P)
    c_lvl = cpu_levels[None, :, None]
    f_over = _overflow(m_lvl, free[:, None, :]).reshape(free.shape[0], -1)
    over: FloatArray = f_over @ m_ind.astype(np.float64)
    w_cpu = 0.5 / g.total_cw if g.total_cw > 0 else 0.0
    w_mem = 0.5 / g.total_demand if g.total_demand > 0 else 0.0
    f_mem = w_mem * _mem_contrib(np.broadcast_to(m_lvl, (1, m_lvl.shape[1], p)), free[:, None])
    f_cpu = w_cpu * _cpu_contrib(
        np.broadcast_to(c_lvl, (1, c_lvl.shape[1], p)), load[:, None], cpus[:, None]
    )
    f_bal = np.concatenate(
        [f_mem.reshape(free.shape[0], -1), f_cpu.reshape(free.shape[0], -1)], axis=1
    )
    # Balance only breaks ties (weight BALANCE_WEIGHT): single precision halves the product.
    ind = np.concatenate([m_ind, c_ind]).astype(np.float32)
    bal: FloatArray = (f_bal.astype(np.float32) @ ind).astype(np.float64)
    return over, bal


def _sampled_pool(g: _Guest, pdist_int: IntArray, samples: int) -> IntArray:
    """Greedy mappings on copies of a topology whose pnodes are randomly blocked: the ways a
    busy host's full pnodes force a guest elsewhere, without looking at any real host."""
    p = pdist_int.shape[0]
    rng = np.random.default_rng(_SEED)
    big = g.total_demand + 1.0
    free = np.where(rng.random((samples, p)) < 0.25, 0.0, big)
    free[np.arange(samples), rng.integers(p, size=samples)] = big
    starts = np.argmax(np.where(free > 0, rng.random((samples, p)), -1.0), axis=1)
    batch = _Host(
        free=free,
        cpus=np.ones((samples, p)),
        load=np.zeros((samples, p)),
        pdist=pdist_int.astype(np.float64),
        pdist_int=pdist_int,
    )
    out: IntArray = np.unique(_greedy(g, batch, starts.astype(np.int64)), axis=0)
    return out


def _exact_distortion_rows(g: _Guest, pdist_int: IntArray, maps: IntArray) -> FloatArray:
    """``_exact_distortion`` of many mappings on one topology, in integers like the original."""
    denom = int(g.cw_int.sum()) * int(g.demand_int.sum())
    if denom == 0 or maps.shape[0] == 0:
        return np.zeros(maps.shape[0], dtype=np.float64)
    weights = g.cw_int[:, None] * g.demand_int[None, :]
    out = np.empty(maps.shape[0], dtype=np.float64)
    v = maps.shape[1]
    step = max(1, _CHUNK_ELEMS // max(1, v * v))
    for lo in range(0, maps.shape[0], step):
        m = maps[lo : lo + step]
        diff = np.abs(g.vdist_int[None] - pdist_int[m[:, :, None], m[:, None, :]])
        num = np.einsum("uv,cuv->c", weights, diff)
        out[lo : lo + step] = num / denom
    return out


@dataclass(frozen=True, kw_only=True)
class _ShapeResult:
    mapping: IntArray  # (H_s, V)
    over: FloatArray  # (H_s,)
    score: FloatArray  # (H_s,)
    distortion: FloatArray  # (H_s,)
    exhaustive: BoolArray  # (H_s,)


def _rank_shape(
    g: _Guest,
    pdist_int: IntArray,
    free: FloatArray,
    cpus: FloatArray,
    load: FloatArray,
    pool_size: int,
    budget_evals: int,
) -> _ShapeResult:
    """All hosts of one topology in one pass: a shortlist of mappings scored against the
    (hosts x pnodes) headroom; hosts the shortlist cannot serve get one batched greedy."""
    maps, dist, bound = _shortlist(g, pdist_int, pool_size, budget_evals)
    over, bal = _host_terms_levels(g, maps, free, cpus, load)
    best = _best_lexicographic(over, dist[None, :] + BALANCE_WEIGHT * bal)
    rows = np.arange(free.shape[0])
    mapping = maps[best]
    best_over = over[rows, best]
    best_bal = bal[rows, best]
    room = free.sum(axis=1) >= g.total_demand
    heuristic = bool(np.isnan(bound))
    if np.isinf(bound):
        weak = np.zeros(free.shape[0], dtype=bool)  # every mapping was scored: nothing to add
        exhaustive = np.ones(free.shape[0], dtype=bool)
    else:
        # No shortlisted mapping fits although the host has room: a greedy of its own. Hosts
        # that a left-out mapping may serve better stay "not exhaustive" for the refinement.
        weak = room & (best_over > 0)
        exhaustive = ~weak & (dist[best] <= bound + _TOL) if not heuristic else ~room

    weak_rows = np.flatnonzero(weak)
    if weak_rows.shape[0]:
        m, o, b = _greedy_rows(g, pdist_int, free[weak_rows], cpus[weak_rows], load[weak_rows])
        cand_dist = _distortions(m, g, pdist_int.astype(np.float64))
        old_score = dist[best[weak_rows]] + BALANCE_WEIGHT * best_bal[weak_rows]
        new_score = cand_dist + BALANCE_WEIGHT * b
        take = (o < best_over[weak_rows]) | (
            (o == best_over[weak_rows]) & (new_score < old_score - _TOL)
        )
        upd = weak_rows[take]
        mapping = mapping.copy()
        mapping[upd] = m[take]
        best_over = best_over.copy()
        best_over[upd] = o[take]
        best_bal = best_bal.copy()
        best_bal[upd] = b[take]
    distortion = _exact_distortion_rows(g, pdist_int, mapping)
    score = distortion + BALANCE_WEIGHT * best_bal
    return _ShapeResult(
        mapping=mapping, over=best_over, score=score, distortion=distortion, exhaustive=exhaustive
    )


def _shortlist(
    g: _Guest, pdist_int: IntArray, pool_size: int, budget_evals: int
) -> tuple[IntArray, FloatArray, float]:
    """`_topology_pool` (sampled) with `_distinct_loads` applied: a function of the guest's shape
    and the topology alone, so kept across requests (read-only)."""

    def compute() -> tuple[IntArray, FloatArray, float]:
        maps, dist, bound = _topology_pool(g, pdist_int, pool_size, budget_evals, sample=True)
        maps, dist = _distinct_loads(g, maps, dist, pdist_int.shape[0])
        maps.setflags(write=False)
        dist.setflags(write=False)
        return maps, dist, bound

    key = (g.key, pdist_int.tobytes(), pdist_int.shape[0], pool_size, budget_evals)
    return SHORTLISTS.get(key, compute)


def _distinct_loads(
    g: _Guest, maps: IntArray, dist: FloatArray, p: int
) -> tuple[IntArray, FloatArray]:
    """Of mappings that put the same MiB and vCPUs on every pnode (same overflow and balance on
    every host), keep the first: with the pool sorted by distortion, the others can never win.
    The symmetric topologies of real machines make most of a shortlist such duplicates."""
    loads = np.concatenate([_pnode_sums(maps, g.demand, p), _pnode_sums(maps, g.cw, p)], axis=1)
    _, first = np.unique(loads, axis=0, return_index=True)
    keep = np.sort(first)
    return maps[keep], dist[keep]


def _greedy_rows(
    g: _Guest, pdist_int: IntArray, free: FloatArray, cpus: FloatArray, load: FloatArray
) -> tuple[IntArray, FloatArray, FloatArray]:
    """Capacity-aware greedy for B hosts of one topology at once (a few starts each: their most
    free pnodes); per host the best start's mapping, overflow and balance."""
    b, p = free.shape
    n_starts = min(p, _BATCH_STARTS)
    starts = np.argsort(-free, axis=1, kind="stable")[:, :n_starts]
    rep = np.repeat(np.arange(b), n_starts)
    pdist = pdist_int.astype(np.float64)
    batch = _Host(free=free[rep], cpus=cpus[rep], load=load[rep], pdist=pdist, pdist_int=pdist_int)
    maps = _greedy(g, batch, starts.ravel().astype(np.int64))
    over, score = _rowwise(g, maps, pdist, free[rep], cpus[rep], load[rep])
    ranked = np.lexsort((score, over, rep))
    firsts = ranked[np.r_[True, rep[ranked][1:] != rep[ranked][:-1]]]
    dist = _distortions(maps[firsts], g, pdist)
    bal = (score[firsts] - dist) / BALANCE_WEIGHT
    return maps[firsts], over[firsts], bal


def _top(key: FloatArray, limit: int) -> IntArray:
    """The ``limit`` smallest keys, ties broken by position, via ``np.argpartition``."""
    n = key.shape[0]
    if limit >= n:
        cand = np.arange(n)
    else:
        kth = key[np.argpartition(key, limit - 1)[limit - 1]]
        cand = np.flatnonzero(key <= kth)
    out: IntArray = cand[np.lexsort((cand, key[cand]))][:limit].astype(np.int64)
    return out


@dataclass(kw_only=True)
class _ClusterResults:
    """Per host (input order) the best placement found so far; filled shape by shape."""

    mapping: IntArray  # (H, V)
    over: FloatArray  # (H,) overflow MiB
    score: FloatArray
    distortion: FloatArray
    exhaustive: BoolArray  # the answer is known optimal: no refinement needed


def _rank_shapes(
    g: _Guest, cluster: ClusterArrays, pool_size: int, budget_evals: int
) -> _ClusterResults:
    """``_rank_shape`` for every topology of the cluster, scattered back to host order."""
    h, v = cluster.n_hosts, g.demand.shape[0]
    res = _ClusterResults(
        mapping=np.zeros((h, v), dtype=np.int64),
        over=np.zeros(h),
        score=np.zeros(h),
        distortion=np.zeros(h),
        exhaustive=np.ones(h, dtype=bool),
    )
    for s, pdist in enumerate(cluster.shapes):
        members = np.flatnonzero(cluster.shape == s)
        p = pdist.shape[0]
        if members.shape[0] == 0 or p == 0:
            continue
        one = _rank_shape(
            g,
            pdist,
            cluster.free_mib[members, :p].astype(np.float64),
            cluster.cpus[members, :p].astype(np.float64),
            cluster.load_vcpus[members, :p].astype(np.float64),
            pool_size,
            budget_evals,
        )
        res.mapping[members] = one.mapping
        res.over[members], res.score[members] = one.over, one.score
        res.distortion[members], res.exhaustive[members] = one.distortion, one.exhaustive
    return res


def _refine_hosts(
    g: _Guest,
    cluster: ClusterArrays,
    res: _ClusterResults,
    spread: BoolArray,
    hosts: list[int],
    budget_evals: int,
) -> None:
    """Give each of ``hosts`` ``place``'s own search; keep its answer where it is better.

    Updates ``res`` and ``spread`` in place."""
    for i in hosts:
        p = cluster.shapes[int(cluster.shape[i])].shape[0]
        host = _make_host(
            cluster.free_mib[i, :p],
            cluster.cpus[i, :p],
            cluster.shapes[int(cluster.shape[i])],
            cluster.load_vcpus[i, :p],
        )
        key = (
            g.key,
            host.pdist_int.tobytes(),
            host.free.tobytes(),
            host.cpus.tobytes(),
            host.load.tobytes(),
            budget_evals,
        )
        new = SEARCHES.get(key, functools.partial(_searched, g, host, budget_evals))
        if (new.spread, new.score) < (bool(spread[i]), float(res.score[i])):
            res.mapping[i], res.score[i], res.distortion[i] = (
                new.mapping,
                new.score,
                new.distortion,
            )
            spread[i] = new.spread


def forget_kept_searches() -> None:
    """Empty `SHORTLISTS` and `SEARCHES`: benchmarks time the searches themselves this way."""
    SHORTLISTS.clear()
    SEARCHES.clear()


def _searched(g: _Guest, host: _Host, budget_evals: int) -> Placement:
    found = _finish(g, host, _search(g, host, budget_evals))
    found.mapping.setflags(write=False)  # kept in SEARCHES
    return found


def rank_cluster(
    *,
    demand_mib: ArrayLike,
    vcpu_count: ArrayLike,
    vdist: ArrayLike,
    cluster: ClusterArrays,
    limit: int | None = None,
    budget_evals: int = DEFAULT_BUDGET_EVALS,
    pool_size: int = DEFAULT_POOL_SIZE,
    refine_top: int = _REFINE_TOP,
) -> ClusterRanking:
    """Place one domain on every host of a cluster in one vectorized pass per topology.

    Per shape, a shortlist of mappings is scored against the shape's (hosts x pnodes) headroom
    matrix; hosts the shortlist cannot serve (no fitting mapping although there is room, or a
    left-out mapping may be better) get a capacity-aware greedy batched over all of them. The
    best ``limit`` hosts are picked with ``np.argpartition``; the first ``refine_top`` of them
    whose answer is not known optimal get ``place``'s own search, then the top is re-picked.
    Results match ``place`` exactly wherever a shape's every mapping fits in the shortlist.
    """
    g = _make_guest(demand_mib, vcpu_count, vdist)
    h = cluster.n_hosts
    limit = h if limit is None else max(0, min(limit, h))
    free_total = cluster.free_mib.sum(axis=1)
    res = _rank_shapes(g, cluster, pool_size, budget_evals)
    n_pnodes = np.array([s.shape[0] for s in cluster.shapes], dtype=np.int64)
    has_nodes = n_pnodes[cluster.shape] > 0 if h else np.zeros(0, dtype=bool)
    feasible = has_nodes & (free_total >= g.total_demand)
    spread = feasible & (res.over > 0)
    # A fitting placement without distortion can only gain on the balance tie-break: no search.
    exhaustive = res.exhaustive | ~feasible | ((res.distortion == 0.0) & ~spread)
    key = res.score + _SPREAD_KEY * spread + _INFEASIBLE_KEY * ~feasible
    order = _top(key, limit)
    refine = [int(i) for i in order[:refine_top] if not exhaustive[int(i)]]
    _refine_hosts(g, cluster, res, spread, refine, budget_evals)
    if refine:
        key = res.score + _SPREAD_KEY * spread + _INFEASIBLE_KEY * ~feasible
        order = _top(key, limit)
    return ClusterRanking(
        order=order,
        feasible=feasible,
        spread=spread,
        score=res.score,
        distortion=res.distortion,
        mapping=res.mapping,
        need_mib=int(g.demand_int.sum()),
        free_total_mib=free_total,
    )
