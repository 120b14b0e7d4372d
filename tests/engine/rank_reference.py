"""Reference oracle for cluster ranking: ``rank_hosts``, formerly in ``service.engine``.

Production ranks with ``rank_cluster`` (padded matrices, one pass per topology); this per-host
version is kept here only so ``test_place.py`` can compare the two against ``place``. It reuses
the engine's private scoring pieces, so a change there shows up in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from service.engine.placement.cluster import (
    _BATCH_STARTS,
    _REFINE_TOP,
    DEFAULT_POOL_SIZE,
    _rowwise,
    _topology_pool,
)
from service.engine.placement.host import HostArrays, Placement, _finish, _fmt_mib
from service.engine.placement.scoring import (
    _TOL,
    BALANCE_WEIGHT,
    IntArray,
    _best_lexicographic,
    _exact_distortion,
    _Guest,
    _Host,
    _host_terms,
    _make_guest,
    _make_host,
)
from service.engine.placement.search import DEFAULT_BUDGET_EVALS, _greedy, _search


@dataclass(frozen=True, kw_only=True)
class Ranking:
    """Placements in the input order of the hosts, plus host indices best first."""

    placements: tuple[Placement, ...]
    order: IntArray


def rank_hosts(
    *,
    demand_mib: ArrayLike,
    vcpu_count: ArrayLike,
    vdist: ArrayLike,
    hosts: Sequence[HostArrays],
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
    g = _make_guest(demand_mib, vcpu_count, vdist)
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
                    feasible=False,
                    mapping=np.zeros(v, dtype=np.int64),
                    distortion=0.0,
                    score=0.0,
                    spread=False,
                    reason="host has no NUMA nodes",
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
                results[i] = Placement(
                    feasible=False,
                    mapping=mapping,
                    distortion=d_exact,
                    score=sc,
                    spread=False,
                    reason=reason,
                )
            else:
                results[i] = Placement(
                    feasible=True,
                    mapping=mapping,
                    distortion=d_exact,
                    score=sc,
                    spread=bool(best_over[r] > 0),
                    reason="",
                )

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
