"""The reservation bound: sufficient for r failures, with every domain's own size.

Each protected domain d gets r backup restarts: entries of its class's candidate list on r
different eligible hosts, none of them its own host. When some set F of r hosts fails, d (on a
host of F) restarts on its first backup that survives: at most r - 1 of its backups are in F,
because its own host is one of the r. A survivor s then receives, on each pnode p, at most
``sum over g in F of L_g(s, p)``, where ``L_g(s, p)`` sums the loads on (s, p) of every backup
of every domain of host g placed on s; that is at most the sum of the r largest ``L_g(s, p)``
over all hosts g, ``T_r(s, p)``. So if ``T_r(s, p)`` fits what s can free on p, for every s and
p, every scenario of r failures is tolerated (docs/failover.md has the proof in full).

Unlike the slot bound it never rounds a domain up to the largest one: a host reserves room for
the r largest groups it backs up, not for every domain it backs up.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from service.engine.failover.candidates import Candidates
from service.engine.failover.classes import Classes
from service.engine.failover.problem import Problem
from service.engine.failover.sweep import item_loads

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

ROUNDS = 3
"""Times the backups on over-reserved hosts move to fresh entries."""

MAX_ROWS = 2_000_000
"""Most (domain, backup) rows the bound builds; beyond, it is not tried."""


def _positions(prob: Problem, cls: Classes, cands: Candidates, r: int, shift: IntArray) -> IntArray:
    """Entry of every (protected domain, backup) (D, r), -1 where the class list is too short.

    Domains are the host CSR's. A domain ranked j among the n domains of its class on its host
    takes positions j + offset + t * n (t < r), shifted by ``shift`` blocks of r * n: distinct
    for one domain and for the domains of a class on one host, which so spread over different
    backups."""
    doms = prob.host_doms
    host = prob.dom_host[doms]
    c = cls.of_guest[prob.dom_guest[doms]]
    k = cands.start[c + 1] - cands.start[c]
    group = host * cls.n_classes + c
    order = np.argsort(group, kind="stable")
    gs = group[order]
    first = np.searchsorted(gs, gs)
    j = np.empty(doms.shape[0], dtype=np.int64)
    j[order] = np.arange(doms.shape[0]) - first
    n = np.empty(doms.shape[0], dtype=np.int64)
    n[order] = np.searchsorted(gs, gs, side="right") - first
    off = (host * 2654435761) & 0x7FFFFFFF
    t = np.arange(r)
    pos = j[:, None] + off[:, None] + (t[None, :] + (shift * r)[:, None]) * n[:, None]
    room = ((shift + 1) * r * n <= k)[:, None]
    e = cands.start[c][:, None] + pos % np.maximum(k, 1)[:, None]
    return np.where(room, e, -1)


def _top_sum(key_s: IntArray, load: IntArray, r: int, n_hosts: int) -> IntArray:
    """(H, B): per host s and bin, the sum of the r largest ``load`` rows of groups keyed by s."""
    out = np.zeros((n_hosts, load.shape[1]), dtype=np.int64)
    for b in range(load.shape[1]):
        col = load[:, b]
        order = np.lexsort((-col, key_s))
        ks = key_s[order]
        rank = np.arange(ks.shape[0]) - np.searchsorted(ks, ks)
        keep = order[rank < r]
        np.add.at(out[:, b], key_s[keep], col[keep])
    return out


def _reserved(
    prob: Problem, cls: Classes, cands: Candidates, entry: IntArray, r: int
) -> tuple[IntArray, IntArray]:
    """T_r per (host, bin), and each row's backup host, for backups ``entry`` (D, r) of the
    domains of the host CSR."""
    d_idx = np.repeat(prob.host_doms, r)
    e = entry.ravel()
    host = cands.host[e]
    guest = prob.dom_guest[d_idx]
    load = item_loads(cls.sorted_items[guest], cands.mapping[e], prob.full.shape[1])
    key = host * prob.n_hosts + prob.dom_host[d_idx]
    u, inv = np.unique(key, return_inverse=True)
    per = np.zeros((u.shape[0], load.shape[1]), dtype=np.int64)
    np.add.at(per, inv, load)
    return _top_sum(u // prob.n_hosts, per, r, prob.n_hosts), host.reshape(entry.shape)


def reservations_tolerate(prob: Problem, cls: Classes, cands: Candidates, r: int) -> bool:
    """Whether backups can be chosen so that every r failures are tolerated (sufficient)."""
    d = prob.host_doms.shape[0]
    if d == 0:
        return True
    if d * r > MAX_ROWS or r >= prob.n_hosts:
        return False
    if int(prob.dom_guest[prob.host_doms].max()) >= cls.of_guest.shape[0]:
        return False  # a guest shape newer than the classes: no candidates to reserve with
    own_host = prob.dom_host[prob.host_doms]
    shift = np.zeros(d, dtype=np.int64)
    for _ in range(ROUNDS):
        entry = _positions(prob, cls, cands, r, shift)
        if (entry < 0).any():
            return False
        host = cands.host[entry]
        own = (host == own_host[:, None]).any(axis=1) | ~prob.eligible[host].all(axis=1)
        if own.any():
            shift = shift + own
            continue
        top, host = _reserved(prob, cls, cands, entry, r)
        over: BoolArray = np.asarray((top > prob.full).any(axis=1))
        if not over.any():
            return True
        shift = shift + over[host].any(axis=1)
    return False
