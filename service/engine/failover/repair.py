"""Scenarios an admission change broke on one host, repaired without searching them again.

When a host loses room or eligibility, a scenario of the sweep that restarts one domain there
keeps every other restart and moves that one to the next entries of its class's candidate list
(``PROBES`` of them, all scenarios and probes as arrays): an entry qualifies when its host is
eligible, not failed in the scenario, not the changed host, and still has room once the
scenario's own restarts there are counted. A scenario with several restarts on the host, or
whose domain no probe fits, is searched again in full (``complete.solve``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from service.engine.failover.candidates import Candidates
from service.engine.failover.classes import Classes
from service.engine.failover.complete import Placed
from service.engine.failover.pack import ScenarioPlan
from service.engine.failover.problem import Problem
from service.engine.failover.sweep import Sweep, guest_mapping, item_loads

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

PROBES = 16
"""Candidate entries tried for a restart that must move."""


def _probe(
    new: Problem, cls: Classes, cands: Candidates, sw: Sweep, scen: IntArray, rows: IntArray, h: int
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """For each displaced row, the first probed entry that fits (-1: none), its host, the
    guest's mapping there and its load per bin."""
    p = sw.pairs
    n = rows.shape[0]
    sig = p.sigma[rows]
    guest = new.dom_guest[p.dom[rows]]
    c = cls.of_guest[guest]
    start, k = cands.start[c], cands.start[c + 1] - cands.start[c]
    t = np.arange(1, PROBES + 1)
    e = (
        start[:, None]
        + (p.entry[rows, None] - start[:, None] + t[None, :]) % np.maximum(k, 1)[:, None]
    )
    hosts = cands.host[e]
    bad = (hosts[:, :, None] == scen[sig][:, None, :]).any(axis=2) | (hosts == h)
    bad |= ~new.eligible[hosts] | (t[None, :] >= k[:, None])
    key = sig[:, None] * new.n_hosts + hosts
    at = np.minimum(np.searchsorted(sw.keys, key), max(sw.keys.shape[0] - 1, 0))
    found = sw.keys[at] == key if sw.keys.size else np.zeros(key.shape, dtype=bool)
    other = np.where(found[:, :, None], sw.key_load[at], 0)
    mc = cands.mapping[e.ravel()]
    g_rep = np.repeat(guest, PROBES)
    mg = np.zeros_like(mc)
    np.put_along_axis(mg, cls.perm[g_rep], mc, axis=1)
    load = item_loads(cls.guest_items[g_rep], mg, new.full.shape[1]).reshape(*e.shape, -1)
    fits = ((other + load) <= new.full[hosts]).all(axis=2) & ~bad
    first = np.argmax(fits, axis=1)
    ar = np.arange(n)
    ok = fits[ar, first]
    flat = ar * PROBES + first
    return (
        np.where(ok, e[ar, first], -1),
        np.where(ok, hosts[ar, first], -1),
        mg[flat],
        load[ar, first],
    )


def _figures(
    new: Problem, sigma: IntArray, hosts: IntArray, loads: IntArray, n_scen: int
) -> tuple[IntArray, IntArray]:
    """Per scenario (``n_scen``), MiB squeezed and MiB used of what is free now, from restart
    rows (``sigma``, ``hosts``, ``loads``) of any number of scenarios at once."""
    key = sigma * new.n_hosts + hosts
    u, inv = np.unique(key, return_inverse=True)
    tot = np.zeros((u.shape[0], loads.shape[1]), dtype=np.int64)
    np.add.at(tot, inv, loads)
    now = new.now[u % new.n_hosts]
    s = u // new.n_hosts
    squeeze = np.bincount(s, weights=np.maximum(tot - now, 0).sum(axis=1), minlength=n_scen)
    used = np.bincount(s, weights=np.minimum(tot, now).sum(axis=1), minlength=n_scen)
    return squeeze.astype(np.int64), used.astype(np.int64)


def repair(
    new: Problem,
    cls: Classes,
    cands: Candidates,
    sw: Sweep,
    scen: IntArray,
    rows: IntArray,
    h: int,
    bounds: IntArray,
) -> tuple[dict[int, ScenarioPlan], set[int]]:
    """Plans for the scenarios of ``rows`` (sweep rows on host ``h``, of scenarios that no
    longer fit there), and the scenarios left to search in full. ``bounds`` (S + 1,): where
    each scenario's rows start in the sweep."""
    p = sw.pairs
    rows = np.sort(rows)
    sig = p.sigma[rows]
    single = np.bincount(sig, minlength=1)[sig] == 1
    left = set(sig[~single].tolist())
    rows = rows[single]
    if rows.size == 0:
        return {}, left
    pick, hosts, maps, loads = _probe(new, cls, cands, sw, scen, rows, h)
    left |= set(p.sigma[rows[pick < 0]].tolist())
    rows, hosts, maps, loads = rows[pick >= 0], hosts[pick >= 0], maps[pick >= 0], loads[pick >= 0]
    if rows.size == 0:
        return {}, left
    # Every row of the repaired scenarios, with the moved ones replaced.
    todo = p.sigma[rows]
    spans = [np.arange(bounds[s], bounds[s + 1]) for s in todo.tolist()]
    allr = np.concatenate(spans)
    at = np.searchsorted(allr, rows)
    r_host, r_load = p.host[allr].copy(), p.load[allr].copy()
    r_map = guest_mapping(cls, cands, p.entry[allr], new.dom_guest[p.dom[allr]])
    r_host[at], r_load[at], r_map[at] = hosts, loads, maps
    squeeze, used = _figures(new, p.sigma[allr], r_host, r_load, scen.shape[0])
    dom = p.dom[allr].tolist()
    n_items = new.n_items[new.dom_guest[p.dom[allr]]].tolist()
    host_l = r_host.tolist()
    out: dict[int, ScenarioPlan] = {}
    k = 0
    for s, span in zip(todo.tolist(), spans, strict=True):
        n = span.shape[0]
        failed = tuple(int(x) for x in scen[s])
        placed: Placed = {dom[i]: (host_l[i], r_map[i, : n_items[i]]) for i in range(k, k + n)}
        k += n
        free_after = new.now_eligible_total - int(new.now_eligible[list(failed)].sum())
        out[s] = ScenarioPlan(
            failed=failed,
            placed=placed,
            unplaced=(),
            proven=True,
            squeeze_mib=int(squeeze[s]),
            free_after_mib=free_after - int(used[s]),
        )
    return out, left
