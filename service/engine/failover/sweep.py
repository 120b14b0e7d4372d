"""Every scenario at once: each failed domain takes a candidate host of its class, chosen so
that the domains of one scenario take different entries, then one joint capacity check.

Within a scenario the domains are ranked (largest first); the j-th takes entry
``(j + offset) mod K`` of its class's list, ``offset`` a hash of the scenario, so two scenarios
rarely lean on the same hosts (an admission check then re-checks few of them), and the domains
of one class in one scenario take different entries while the list is long enough. An entry
that is one of the failed hosts is replaced by the one ``n`` further (``n``: the scenario's
domains). Entries may still meet on one host: the per-(scenario, host, pnode) sums of the
domains' real loads are compared with what the host can free. A scenario that passes has a
proven plan; the others go to ``pack``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.engine.failover.candidates import Candidates
from service.engine.failover.classes import Classes
from service.engine.failover.problem import Problem

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

ROUNDS = 3
"""Tries per domain when its entry is a failed host."""


@dataclass(frozen=True, kw_only=True, eq=False)
class Pairs:
    """One row per (scenario, failed domain), grouped by scenario: ``host`` -1 when the sweep
    found none; ``entry`` the candidate used (``guest_mapping`` gives the guest's mapping);
    ``load`` (N, B) MiB per bin of that restart."""

    sigma: IntArray
    dom: IntArray
    host: IntArray
    entry: IntArray
    load: IntArray


@dataclass(frozen=True, kw_only=True, eq=False)
class Sweep:
    """``ok`` (S,): the scenario's restarts all fit; ``squeeze_mib``/``used_now_mib`` (S,): MiB
    the restarts take beyond / within what is free now on their hosts; ``keys`` (U,) sorted
    ``scenario * hosts + host`` of every host a scenario loads, ``key_load`` (U, B) that load."""

    pairs: Pairs
    ok: BoolArray
    squeeze_mib: IntArray
    used_now_mib: IntArray
    keys: IntArray
    key_load: IntArray


def scenario_pairs(prob: Problem, scen: IntArray) -> tuple[IntArray, IntArray]:
    """(scenario, domain) for every domain of every failed host, largest domain first within a
    scenario (ties by domain index)."""
    s, r = scen.shape
    sig_parts, dom_parts = [], []
    for k in range(r):
        g = scen[:, k]
        cnt = prob.host_start[g + 1] - prob.host_start[g]
        total = int(cnt.sum())
        within = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        sig_parts.append(np.repeat(np.arange(s), cnt))
        dom_parts.append(prob.host_doms[np.repeat(prob.host_start[g], cnt) + within])
    sigma = np.concatenate(sig_parts).astype(np.int64) if sig_parts else np.zeros(0, np.int64)
    dom = np.concatenate(dom_parts).astype(np.int64) if dom_parts else np.zeros(0, np.int64)
    order = np.lexsort((dom, -prob.dom_total[dom], sigma))
    return sigma[order], dom[order]


def _scenario_key(scen: IntArray) -> IntArray:
    primes = np.array([2654435761, 40503, 2246822519, 3266489917, 668265263], dtype=np.int64)
    k = scen.shape[1]
    reps = np.resize(primes, k)
    out: IntArray = (scen * reps[None, :]).sum(axis=1) & 0x7FFFFFFF
    return out


def _choose(
    cls: Classes, cands: Candidates, scen: IntArray, sigma: IntArray, dom_guest: IntArray
) -> tuple[IntArray, IntArray]:
    """Candidate entry per pair (-1: none), by rank within the scenario."""
    n_sig = np.bincount(sigma, minlength=scen.shape[0])
    j = np.arange(sigma.shape[0]) - (np.cumsum(n_sig) - n_sig)[sigma]
    n = n_sig[sigma]
    c = cls.of_guest[dom_guest]
    k_all = cands.start[c + 1] - cands.start[c]
    k_free = cands.n_free[c]
    k = np.where(k_free >= 2 * n, k_free, k_all)
    off = _scenario_key(scen)[sigma] % np.maximum(k, 1)
    entry = np.full(sigma.shape[0], -1, dtype=np.int64)
    pending = np.ones(sigma.shape[0], dtype=bool)
    for t in range(ROUNDS):
        can = pending & (k > 0)
        idx = np.flatnonzero(can)
        if idx.size == 0:
            break
        e = cands.start[c[idx]] + (j[idx] + off[idx] + t * n[idx]) % k[idx]
        h = cands.host[e]
        dead = (h[:, None] == scen[sigma[idx]]).any(axis=1)
        entry[idx[~dead]] = e[~dead]
        pending[idx[~dead]] = False
    return entry, c


def guest_mapping(cls: Classes, cands: Candidates, entry: IntArray, guest: IntArray) -> IntArray:
    """Guest item -> bin mappings (N, K) of candidate entries used by guests ``guest``."""
    mc = (
        cands.mapping[np.maximum(entry, 0)]
        if cands.mapping.shape[0]
        else np.zeros((entry.shape[0], cls.perm.shape[1]), np.int64)
    )
    out = np.zeros_like(mc)
    np.put_along_axis(out, cls.perm[guest], mc, axis=1)
    return out


def item_loads(items: IntArray, mapping: IntArray, n_bins: int) -> IntArray:
    """(N, B) MiB per bin of N restarts, each its items (N, K) on bins ``mapping`` (N, K)."""
    n = mapping.shape[0]
    flat = (np.arange(n)[:, None] * n_bins + mapping).ravel()
    out: IntArray = np.bincount(flat, weights=items.ravel(), minlength=n * n_bins).astype(np.int64)
    return out.reshape(n, n_bins)


def sweep(prob: Problem, cls: Classes, cands: Candidates, scen: IntArray) -> Sweep:
    s = scen.shape[0]
    sigma, dom = scenario_pairs(prob, scen)
    guest = prob.dom_guest[dom]
    entry, _ = _choose(cls, cands, scen, sigma, guest)
    host = np.where(entry >= 0, cands.host[np.maximum(entry, 0)] if cands.host.size else -1, -1)
    b = prob.full.shape[1]
    # Class item i is the guest's i-th largest item: the entry's class mapping loads the bins
    # with the guest's sorted items directly.
    mc = (
        cands.mapping[np.maximum(entry, 0)]
        if cands.mapping.shape[0]
        else np.zeros((entry.shape[0], cls.perm.shape[1]), np.int64)
    )
    load = item_loads(cls.sorted_items[guest], mc, b)
    ok = np.ones(s, dtype=bool)
    ok[sigma[(host < 0) | ~prob.eligible[np.maximum(host, 0)]]] = False
    squeeze = np.zeros(s, dtype=np.int64)
    used = np.zeros(s, dtype=np.int64)
    keys, tot = np.zeros(0, np.int64), np.zeros((0, b), np.int64)
    a = np.flatnonzero(host >= 0)
    if a.size:
        key = sigma[a] * prob.n_hosts + host[a]
        order = np.argsort(key, kind="stable")
        ks = key[order]
        heads = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
        keys, tot = ks[heads], np.add.reduceat(load[a[order]], heads, axis=0)
        hs, ss = keys % prob.n_hosts, keys // prob.n_hosts
        ok[ss[(tot > prob.full[hs]).any(axis=1)]] = False
        now = prob.now[hs]
        np.add.at(squeeze, ss, np.maximum(tot - now, 0).sum(axis=1))
        np.add.at(used, ss, np.minimum(tot, now).sum(axis=1))
    pairs = Pairs(sigma=sigma, dom=dom, host=host, entry=entry, load=load)
    return Sweep(
        pairs=pairs, ok=ok, squeeze_mib=squeeze, used_now_mib=used, keys=keys, key_load=tot
    )
