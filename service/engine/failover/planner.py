"""The failover plan (issue 26): can every protected domain restart after any r host failures,
each vnode on one pnode of a surviving eligible host, within its distortion limit, squeezing the
survivors down to their domains' dynamic_min if need be? And how many failures could the
cluster take?

``plan_failover`` answers from the hosts' (hosts x pnodes) matrices and the protected domains'
guest shapes; ``FailoverPlan.state`` feeds ``admission.check_change``. The levels (one r each)
are decided in ``levels``; the model, the bounds and their proofs are in docs/failover.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.engine.errors import InputError
from service.engine.failover.admission import FailoverState, make_state
from service.engine.failover.inputs import FailoverHosts, ProtectedDomains
from service.engine.failover.levels import (
    DEFAULT_FIT_NODES,
    DEFAULT_MAX_SCENARIOS,
    DEFAULT_SEARCH_NODES,
    Context,
    Level,
    Status,
    level,
    max_failures,
    prepare,
)
from service.engine.failover.pack import ScenarioPlan, load_of
from service.engine.failover.reasons import Unplaced, reason
from service.engine.failover.restarts import Restarts, empty_restarts, make_restarts
from service.engine.failover.sweep import guest_mapping

IntArray = NDArray[np.int64]


@dataclass(frozen=True, kw_only=True, eq=False)
class Worst:
    """The worst scenario found: most domains stranded, then most squeezing, then least free
    memory left. ``restarts`` are its own (``failed_host``: the domain's host); ``proven``: its
    stranded domains cannot be fewer."""

    failed_hosts: tuple[int, ...]
    free_after_mib: int
    squeeze_mib: int
    unplaced: tuple[Unplaced, ...]
    restarts: Restarts
    proven: bool


@dataclass(frozen=True, kw_only=True, eq=False)
class FailoverPlan:
    """The answer for ``host_failures`` = r (see the module docstring and docs/failover.md).

    ``scenarios``: sets of r failed hosts the answer covers, C(n, r); ``searched``: those
    checked one by one; ``method``: "exhaustive", "slots" or "reservations" (that bound proved
    it), "totals" (a scenario lacks memory in total) or "bound" (no proof either way; ``note``
    says so); ``restarts``: for each
    host with protected domains, where they restart when it fails alone (empty when that level
    was not enumerated); ``state``: what an admission check re-uses."""

    host_failures: int
    tolerated: bool
    exact: bool
    method: str
    scenarios: int
    searched: int
    max_host_failures: int
    max_host_failures_exact: bool
    worst: Worst | None
    restarts: Restarts
    note: str
    state: FailoverState


# --------------------------------------------------------------------------- the plan


def _worst(ctx: Context, plan: ScenarioPlan) -> Worst:
    prob = ctx.prob
    placed_mib = sum(int(load_of(prob, d, m).sum()) for d, (_, m) in plan.placed.items())
    unplaced = tuple(
        Unplaced(domain=d, reason=reason(prob, plan.failed, d, placed_mib, plan.proven))
        for d in plan.unplaced
    )
    doms = np.array(sorted(plan.placed), dtype=np.int64)
    width = max((g.items.shape[0] for g in prob.guests), default=1)
    item_map = np.zeros((doms.shape[0], width), dtype=np.int64)
    hosts = np.zeros(doms.shape[0], dtype=np.int64)
    for i, d in enumerate(doms.tolist()):
        h, m = plan.placed[d]
        hosts[i], item_map[i, : m.shape[0]] = h, m
    return Worst(
        failed_hosts=plan.failed,
        free_after_mib=plan.free_after_mib,
        squeeze_mib=plan.squeeze_mib,
        unplaced=unplaced,
        restarts=make_restarts(prob, prob.dom_host[doms], doms, hosts, item_map),
        proven=plan.proven,
    )


def single_failure_restarts(ctx: Context, lvl: Level) -> Restarts:
    """Every failed domain's restart in the enumerated level ``lvl`` (r = 1)."""
    assert lvl.scen is not None and lvl.sweep is not None and lvl.packed is not None
    p = lvl.sweep.pairs
    keep = lvl.sweep.ok[p.sigma] & (p.host >= 0)
    maps = guest_mapping(ctx.cls, ctx.cands, p.entry[keep], ctx.prob.dom_guest[p.dom[keep]])
    dom, host, item_map = [p.dom[keep]], [p.host[keep]], [maps]
    for plan in lvl.packed.values():
        ds = sorted(plan.placed)
        if not ds:
            continue
        dom.append(np.array(ds, dtype=np.int64))
        host.append(np.array([plan.placed[d][0] for d in ds], dtype=np.int64))
        rows = np.zeros((len(ds), maps.shape[1]), dtype=np.int64)
        for i, d in enumerate(ds):
            m = plan.placed[d][1]
            rows[i, : m.shape[0]] = m
        item_map.append(rows)
    d_all = np.concatenate(dom)
    order = np.argsort(d_all, kind="stable")
    d_all = d_all[order]
    return make_restarts(
        ctx.prob,
        ctx.prob.dom_host[d_all],
        d_all,
        np.concatenate(host)[order],
        np.concatenate(item_map)[order],
    )


def plan_failover(
    hosts: FailoverHosts,
    domains: ProtectedDomains,
    *,
    host_failures: int = 1,
    allow_spread: bool = False,
    max_scenarios: int = DEFAULT_MAX_SCENARIOS,
    search_nodes: int = DEFAULT_SEARCH_NODES,
    fit_nodes: int = DEFAULT_FIT_NODES,
    find_max: bool = True,
    with_restarts: bool = True,
) -> FailoverPlan:
    """Can every protected domain restart after any ``host_failures`` host failures?

    ``find_max``: also search the largest number of failures tolerated (otherwise
    ``max_host_failures`` is r when r is tolerated, else 0, and not exact). ``with_restarts``:
    list where each host's domains restart when it fails alone."""
    r = int(host_failures)
    if r < 0 or r > hosts.n_hosts:
        raise InputError(f"host_failures must be between 0 and the {hosts.n_hosts} hosts")
    ctx = prepare(
        hosts,
        domains,
        allow_spread=allow_spread,
        max_scenarios=max_scenarios,
        search_nodes=search_nodes,
        fit_nodes=fit_nodes,
    )
    return _answer(ctx, r, find_max=find_max, with_restarts=with_restarts)


def _answer(ctx: Context, r: int, *, find_max: bool, with_restarts: bool) -> FailoverPlan:
    lvl = level(ctx, r, want_worst=True)
    if find_max:
        mx, mx_exact = max_failures(ctx, r)
    else:  # the largest r proven tolerated without searching: r itself, or none
        mx, mx_exact = (r if lvl.status == Status.TOLERATED else 0), False
    restarts = empty_restarts()
    if with_restarts and ctx.prob.n_domains and ctx.prob.n_hosts <= ctx.max_scenarios:
        one = level(ctx, 1)
        if one.sweep is not None:
            restarts = single_failure_restarts(ctx, one)
    return FailoverPlan(
        host_failures=r,
        tolerated=lvl.status == Status.TOLERATED,
        exact=lvl.exact and lvl.method == "exhaustive",
        method=lvl.method,
        scenarios=lvl.scenarios,
        searched=lvl.searched,
        max_host_failures=mx,
        max_host_failures_exact=mx_exact,
        worst=None if lvl.worst is None else _worst(ctx, lvl.worst),
        restarts=restarts,
        note=lvl.note,
        state=make_state(ctx, lvl),
    )
