"""Levels: for r host failures, is every protected domain restartable, and how many failures
could the cluster take? (Semantics and proofs: docs/failover.md.)

A level r is decided one of two ways. When the C(n, r) scenarios are few enough
(``max_scenarios``) every one is checked: all at once by ``sweep``, then one by one with the
complete search (``complete.solve``) for those the sweep could not serve; ``exact`` is true when
every scenario's answer is proven. Beyond that, bounds decide without enumerating: a necessary
condition on total memory (a failing scenario, certain) and the slot bound (sufficient: never
says tolerated wrongly); ``exact`` is then false.

Tolerance is monotone in r (if every set of r + 1 failures is survivable, so is every set of r:
add any host to the r, restart as for the r + 1, and the extra survivor only adds room), so the
largest tolerated r is found by galloping from the requested r and bisecting; levels answered by
a bound are a lower bound of the truth, and ``max_host_failures_exact`` says whether r + 1 was
proven not tolerated.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from numpy.typing import NDArray

from service.engine.errors import InputError
from service.engine.failover.bounds import (
    Slots,
    protected_mib,
    slots,
    slots_tolerate,
    top_hosts,
    totals_fail,
)
from service.engine.failover.candidates import DEFAULT_WANT, Candidates, find_candidates
from service.engine.failover.classes import Classes, build_classes
from service.engine.failover.complete import Placed, finish, solve
from service.engine.failover.inputs import (
    FailoverHosts,
    ProtectedDomains,
    check_domains,
    check_hosts,
)
from service.engine.failover.pack import ScenarioPlan, scenario_domains
from service.engine.failover.problem import Problem, make_problem
from service.engine.failover.reserve import reservations_tolerate
from service.engine.failover.sweep import Pairs, Sweep, guest_mapping, sweep

IntArray = NDArray[np.int64]

DEFAULT_MAX_SCENARIOS = 20_000
"""Most scenarios checked one by one; beyond, the bounds answer (``exact`` false)."""

DEFAULT_SEARCH_NODES = 100_000
"""Node budget of one scenario's complete search."""

DEFAULT_FIT_NODES = 20_000
"""Node budget of one domain-on-one-host search."""

LEVEL_NODES = 1_000_000
"""Node budget of the complete searches of one level, all scenarios together: a cluster where
many scenarios strand is not searched without end (the later ones are then unproven)."""

WORST_DOMAINS = 4_000
"""Most domains in a scenario searched to name what a bound-decided level would strand."""

PAIRS_PER_SWEEP = 250_000
"""Scenario-domain rows per vectorized sweep (bounds its memory)."""


class Status(Enum):
    TOLERATED = "tolerated"
    NOT_TOLERATED = "not tolerated"
    UNKNOWN = "unknown"


@dataclass(kw_only=True, eq=False)
class Level:
    r: int
    status: Status
    exact: bool
    method: str
    scenarios: int
    searched: int
    worst: ScenarioPlan | None = None
    scen: IntArray | None = None
    sweep: Sweep | None = None
    packed: dict[int, ScenarioPlan] | None = None
    note: str = ""


@dataclass(kw_only=True, eq=False)
class Context:
    prob: Problem
    cls: Classes
    cands: Candidates
    max_scenarios: int
    search_nodes: int
    levels: dict[int, Level]
    slot_cache: list[Slots] = field(default_factory=list)

    def slots(self) -> Slots:
        """Slots per host (level-independent: computed once)."""
        if not self.slot_cache:
            self.slot_cache.append(slots(self.prob, self.cls))
        return self.slot_cache[0]


# --------------------------------------------------------------------------- one level


def _scenarios(prob: Problem, r: int) -> IntArray:
    """Every set of r hosts that holds a protected domain (the others strand nothing)."""
    n = prob.n_hosts
    count = np.diff(prob.host_start)
    if r == 1:
        return np.flatnonzero(count > 0).astype(np.int64)[:, None]
    rows = np.array(list(itertools.combinations(range(n), r)), dtype=np.int64).reshape(-1, r)
    return rows[(count[rows] > 0).any(axis=1)]


def _chunks(prob: Problem, scen: IntArray) -> list[slice]:
    per = np.diff(prob.host_start)[scen].sum(axis=1)
    out, lo, acc = [], 0, 0
    for i, k in enumerate(per.tolist()):
        if acc + k > PAIRS_PER_SWEEP and i > lo:
            out.append(slice(lo, i))
            lo, acc = i, 0
        acc += k
    out.append(slice(lo, scen.shape[0]))
    return out


def _sweep_all(ctx: Context, scen: IntArray) -> Sweep:
    parts = [sweep(ctx.prob, ctx.cls, ctx.cands, scen[sl]) for sl in _chunks(ctx.prob, scen)]
    if len(parts) == 1:
        return parts[0]
    offs = np.cumsum([0] + [p.ok.shape[0] for p in parts[:-1]]).tolist()
    h = ctx.prob.n_hosts

    def cat(get: Callable[[Sweep], IntArray]) -> IntArray:
        return np.concatenate([get(p) for p in parts])

    pairs = Pairs(
        sigma=np.concatenate([p.pairs.sigma + o for p, o in zip(parts, offs, strict=True)]),
        dom=cat(lambda p: p.pairs.dom),
        host=cat(lambda p: p.pairs.host),
        entry=cat(lambda p: p.pairs.entry),
        load=cat(lambda p: p.pairs.load),
    )
    return Sweep(
        pairs=pairs,
        ok=np.concatenate([p.ok for p in parts]),
        squeeze_mib=cat(lambda p: p.squeeze_mib),
        used_now_mib=cat(lambda p: p.used_now_mib),
        keys=np.concatenate([p.keys + o * h for p, o in zip(parts, offs, strict=True)]),
        key_load=cat(lambda p: p.key_load),
    )


def swept_plan(ctx: Context, lvl: Level, sigma: int) -> ScenarioPlan:
    """Scenario ``sigma`` of an enumerated level as a ScenarioPlan."""
    assert lvl.scen is not None and lvl.sweep is not None and lvl.packed is not None
    if sigma in lvl.packed:
        return lvl.packed[sigma]

    failed = tuple(int(h) for h in lvl.scen[sigma])
    p = lvl.sweep.pairs
    rows = np.flatnonzero(p.sigma == sigma)
    maps = guest_mapping(ctx.cls, ctx.cands, p.entry[rows], ctx.prob.dom_guest[p.dom[rows]])
    placed: Placed = {}
    for k, i in enumerate(rows.tolist()):
        d = int(p.dom[i])
        v = int(ctx.prob.n_items[ctx.prob.dom_guest[d]])
        placed[d] = (int(p.host[i]), maps[k, :v])
    return finish(ctx.prob, failed, placed, scenario_domains(ctx.prob, failed), proven=True)


def _worst_index(ctx: Context, lvl: Level) -> int | None:
    assert lvl.scen is not None and lvl.sweep is not None and lvl.packed is not None
    prob, sw = ctx.prob, lvl.sweep
    s = lvl.scen.shape[0]
    if s == 0:
        return None
    elig_now = np.where(prob.eligible, prob.now.sum(axis=1), 0)
    free_after = int(elig_now.sum()) - elig_now[lvl.scen].sum(axis=1) - sw.used_now_mib
    stranded = np.zeros(s, dtype=np.int64)
    squeeze = sw.squeeze_mib.copy()
    for i, plan in lvl.packed.items():
        stranded[i] = len(plan.unplaced)
        squeeze[i] = plan.squeeze_mib
        free_after[i] = plan.free_after_mib
    order = np.lexsort((np.arange(s), free_after, -squeeze, -stranded))
    return int(order[0])


def enumerate_level(ctx: Context, r: int) -> Level:
    prob = ctx.prob
    scen = _scenarios(prob, r)
    sw = _sweep_all(ctx, scen)
    packed: dict[int, ScenarioPlan] = {}
    left = LEVEL_NODES
    for i in np.flatnonzero(~sw.ok).tolist():
        failed = tuple(int(h) for h in scen[i])
        packed[i] = solve(prob, ctx.cls, ctx.cands, failed, max(min(ctx.search_nodes, left), 1))
        left -= packed[i].nodes
    failing = [p for p in packed.values() if p.unplaced]
    unproven = any(not p.proven for p in packed.values())
    if not failing:
        status = Status.TOLERATED
    elif any(p.proven for p in failing):
        status = Status.NOT_TOLERATED
    else:
        status = Status.UNKNOWN
    lvl = Level(
        r=r,
        status=status,
        exact=not unproven,
        method="exhaustive",
        scenarios=math.comb(prob.n_hosts, r),
        searched=int(scen.shape[0]),
        scen=scen,
        sweep=sw,
        packed=packed,
    )
    w = _worst_index(ctx, lvl)
    lvl.worst = None if w is None else swept_plan(ctx, lvl, w)
    return lvl


def _solve_if_small(ctx: Context, failed: tuple[int, ...]) -> ScenarioPlan | None:
    n = int(np.diff(ctx.prob.host_start)[list(failed)].sum()) if failed else 0
    if n > WORST_DOMAINS:
        return None
    return solve(ctx.prob, ctx.cls, ctx.cands, failed, ctx.search_nodes)


def bounded_level(ctx: Context, r: int, want_worst: bool) -> Level:
    prob = ctx.prob
    count = math.comb(prob.n_hosts, r)
    short = totals_fail(prob, r)
    if short is not None:
        worst = _solve_if_small(ctx, short) if want_worst else None
        note = f"hosts {list(short)} hold more protected memory than the survivors can free"
        return Level(
            r=r,
            status=Status.NOT_TOLERATED,
            exact=False,
            method="totals",
            scenarios=count,
            searched=0,
            worst=worst,
            note=note,
        )
    heavy = top_hosts(protected_mib(prob), r)
    method = (
        "slots"
        if slots_tolerate(prob, ctx.slots(), r)
        else "reservations"
        if reservations_tolerate(prob, ctx.cls, ctx.cands, r)
        else None
    )
    if method is not None:
        worst = _solve_if_small(ctx, heavy) if want_worst else None
        return Level(
            r=r,
            status=Status.TOLERATED,
            exact=False,
            method=method,
            scenarios=count,
            searched=0,
            worst=worst,
        )
    worst = _solve_if_small(ctx, heavy) if want_worst else None
    if worst is not None and worst.unplaced and worst.proven:
        status, note = Status.NOT_TOLERATED, ""
    else:
        status = Status.UNKNOWN
        note = f"no bound proves {r} failure(s) tolerated and no failing scenario was found"
    return Level(
        r=r,
        status=status,
        exact=False,
        method="bound",
        scenarios=count,
        searched=int(worst is not None),
        worst=worst,
        note=note,
    )


def level(ctx: Context, r: int, want_worst: bool = False) -> Level:
    """Level r, computed once (a level computed without its worst scenario is recomputed when
    the worst is wanted and the level was decided by a bound)."""
    got = ctx.levels.get(r)
    if got is not None and (got.worst is not None or not want_worst or got.method == "exhaustive"):
        return got
    prob = ctx.prob
    enumerable = math.comb(prob.n_hosts, r) <= ctx.max_scenarios
    if r == 0 or (prob.n_domains == 0 and not enumerable):
        lvl = Level(
            r=r,
            status=Status.TOLERATED,
            exact=True,
            method="exhaustive",
            scenarios=math.comb(prob.n_hosts, r),
            searched=0,
        )
    elif enumerable:
        lvl = enumerate_level(ctx, r)
    else:
        lvl = bounded_level(ctx, r, want_worst)
    ctx.levels[r] = lvl
    return lvl


# --------------------------------------------------------------------------- max failures


def _ok(ctx: Context, r: int) -> bool:
    return level(ctx, r).status == Status.TOLERATED


def max_failures(ctx: Context, start: int) -> tuple[int, bool]:
    """Largest r proven tolerated (galloping from ``start``, then bisecting), and whether r + 1
    is proven not tolerated."""
    n = ctx.prob.n_hosts
    if _ok(ctx, start):
        lo, hi, step = start, n + 1, 1
        while lo + step <= n:
            if _ok(ctx, lo + step):
                lo, step = lo + step, step * 2
            else:
                hi = lo + step
                break
    else:
        hi, lo, step = start, 0, 1
        while hi - step > 0:
            if _ok(ctx, hi - step):
                lo = hi - step
                break
            hi, step = hi - step, step * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _ok(ctx, mid):
            lo = mid
        else:
            hi = mid
    if lo >= n:
        return lo, True
    nxt = level(ctx, lo + 1)
    return lo, nxt.status == Status.NOT_TOLERATED


def prepare(
    hosts: FailoverHosts,
    domains: ProtectedDomains,
    *,
    allow_spread: bool,
    max_scenarios: int,
    search_nodes: int,
    fit_nodes: int,
    candidates: int = DEFAULT_WANT,
) -> Context:
    """Validate and build everything the levels share (classes, candidate hosts)."""
    check_hosts(hosts)
    check_domains(domains, hosts.n_hosts)
    if max_scenarios < 0 or search_nodes < 1 or fit_nodes < 1:
        raise InputError("max_scenarios must be >= 0 and the node budgets >= 1")
    prob = make_problem(hosts, domains, spread=allow_spread, fit_budget=fit_nodes)
    cls = build_classes(prob)
    return Context(
        prob=prob,
        cls=cls,
        cands=find_candidates(prob, cls, candidates),
        max_scenarios=max_scenarios,
        search_nodes=search_nodes,
        levels={},
    )
