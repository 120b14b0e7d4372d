"""Admission: is the plan still tolerated after one change (a domain created, a target
raised, a host set to maintenance)? Answered by re-checking only what the change touches.

The state of a plan keeps, for an enumerated level, every scenario's restarts. A change is a
set of host rows (free MiB, squeezable MiB, eligibility) and protected domains (added, resized,
moved or unprotected). Then:

* a host that lost room or eligibility: the scenarios whose restarts use it (an index by host)
  compare their load there with the new room; those that no longer fit are searched again;
* a protected domain added, changed or removed on host h: the scenarios that fail h are searched
  again (for r = 1, one scenario; a host that had no protected domain gets its scenarios).

Every other scenario's plan is untouched by the change and still holds, so the answer is the
same as planning from scratch would prove (up to which valid plan each scenario holds). For a
level decided by bounds the totals condition and the slot bound are recomputed, the slots only
for the hosts and guests that changed.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.engine.failover.bounds import Slots, recount, slots_tolerate, totals_fail, with_guest
from service.engine.failover.complete import solve
from service.engine.failover.inputs import GuestShape
from service.engine.failover.levels import Context, Level, swept_plan
from service.engine.failover.pack import ScenarioPlan, load_of
from service.engine.failover.problem import Problem, with_domain, with_host_rows
from service.engine.failover.reasons import Unplaced, reason
from service.engine.failover.repair import repair
from service.engine.failover.reserve import reservations_tolerate

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True, kw_only=True)
class HostChange:
    """A host's new row: free MiB and squeezable MiB per pnode, eligibility (None: unchanged)."""

    host: int
    free_mib: IntArray | None = None
    squeezable_mib: IntArray | None = None
    eligible: bool | None = None


@dataclass(frozen=True, kw_only=True)
class DomainChange:
    """A protected domain (None: a new one, given the next index) now on ``host`` with
    ``guest`` (None: no longer protected)."""

    domain: int | None
    host: int
    guest: GuestShape | None


@dataclass(frozen=True, kw_only=True, eq=False)
class FailoverState:
    """What an admission check re-uses. ``stranded``/``unproven`` (S,): per scenario of an
    enumerated level; ``by_host``: sweep rows sorted by host, ``packed_on``: host -> scenarios
    searched one by one that restart something there."""

    ctx: Context
    r: int
    level: Level
    stranded: IntArray
    unproven: BoolArray
    by_host: IntArray
    host_sorted: IntArray
    bounds: IntArray
    packed_on: dict[int, frozenset[int]]
    slots: Slots | None


@dataclass(frozen=True, kw_only=True, eq=False)
class Admission:
    """After the change: ``tolerated`` and ``exact`` as in the plan; a scenario it breaks
    (``failed_hosts``, empty when tolerated) and the domains that would be ``stranded`` there;
    ``state`` to keep if the change is made."""

    tolerated: bool
    exact: bool
    failed_hosts: tuple[int, ...]
    stranded: tuple[Unplaced, ...]
    state: FailoverState


def _packed_index(plans: dict[int, ScenarioPlan]) -> dict[int, frozenset[int]]:
    out: dict[int, set[int]] = {}
    for sigma, plan in plans.items():
        for h, _ in plan.placed.values():
            out.setdefault(h, set()).add(sigma)
    return {h: frozenset(s) for h, s in out.items()}


def _warm(prob: Problem) -> None:
    """Compute the problem's kept per-host figures now, so that every admission check starts
    from them (each change carries them over instead of recomputing them over every host)."""
    for name in ("roomiest", "full_total", "full_bin_max", "now_eligible_total", "n_items"):
        getattr(prob, name)
    for name in ("largest_bin", "largest_host"):
        getattr(prob, name)


def make_state(ctx: Context, lvl: Level) -> FailoverState:
    _warm(ctx.prob)
    if lvl.scen is None or lvl.sweep is None or lvl.packed is None:
        return FailoverState(
            ctx=ctx,
            r=lvl.r,
            level=lvl,
            stranded=np.zeros(0, np.int64),
            unproven=np.zeros(0, bool),
            by_host=np.zeros(0, np.int64),
            host_sorted=np.zeros(0, np.int64),
            bounds=np.zeros(1, np.int64),
            packed_on={},
            slots=ctx.slots() if lvl.method != "exhaustive" else None,
        )
    s = lvl.scen.shape[0]
    by_host = np.argsort(lvl.sweep.pairs.host, kind="stable")
    stranded = np.zeros(s, dtype=np.int64)
    unproven = np.zeros(s, dtype=bool)
    for sigma, plan in lvl.packed.items():
        stranded[sigma], unproven[sigma] = len(plan.unplaced), not plan.proven
    return FailoverState(
        ctx=ctx,
        r=lvl.r,
        level=lvl,
        stranded=stranded,
        unproven=unproven,
        by_host=by_host,
        host_sorted=lvl.sweep.pairs.host[by_host],
        bounds=np.searchsorted(lvl.sweep.pairs.sigma, np.arange(s + 1)).astype(np.int64),
        packed_on=_packed_index(lvl.packed),
        slots=None,
    )


def _apply(prob: Problem, hosts: tuple[HostChange, ...], doms: tuple[DomainChange, ...]) -> Problem:
    for hc in hosts:
        prob = with_host_rows(prob, hc.host, hc.free_mib, hc.squeezable_mib, hc.eligible)
    for dc in doms:
        prob = with_domain(prob, dc.domain, dc.host, dc.guest)
    return prob


def _gained_room(old: Problem, new: Problem, h: int) -> bool:
    return bool((new.full[h] > old.full[h]).any() or (new.eligible[h] and not old.eligible[h]))


def _lost_room(old: Problem, new: Problem, h: int) -> bool:
    return bool((new.full[h] < old.full[h]).any() or (old.eligible[h] and not new.eligible[h]))


def _broken_on(state: FailoverState, new: Problem, h: int) -> tuple[IntArray, set[int]]:
    """Scenarios whose restarts no longer fit host ``h`` in ``new``: the sweep rows on ``h`` of
    those the sweep planned, and those searched one by one."""
    lvl = state.level
    assert lvl.sweep is not None and lvl.packed is not None
    pairs = lvl.sweep.pairs
    lo, hi = np.searchsorted(state.host_sorted, [h, h + 1])
    rows = state.by_host[lo:hi]
    if lvl.packed:
        rows = rows[~np.isin(pairs.sigma[rows], np.fromiter(lvl.packed, dtype=np.int64))]
    broken_rows = np.zeros(0, dtype=np.int64)
    if rows.size:
        sig = pairs.sigma[rows]
        order = np.argsort(sig, kind="stable")
        heads = np.flatnonzero(np.r_[True, sig[order][1:] != sig[order][:-1]])
        tot = np.add.reduceat(pairs.load[rows[order]], heads, axis=0)
        bad = (tot > new.full[h]).any(axis=1) | (not new.eligible[h])
        broken_rows = rows[np.isin(sig, sig[order][heads][bad])]
    packed: set[int] = set()
    for sigma in state.packed_on.get(h, ()):
        plan = lvl.packed[sigma]
        load = sum(
            (load_of(new, d, m) for d, (hh, m) in plan.placed.items() if hh == h),
            np.zeros(new.full.shape[1], dtype=np.int64),
        )
        if (load > new.full[h]).any() or not new.eligible[h]:
            packed.add(sigma)
    return broken_rows, packed


def _with_scenarios(scen: IntArray, old: Problem, h: int, r: int) -> tuple[IntArray, set[int]]:
    """The level's scenarios ``scen``, plus those failing ``h`` it lacked (``h`` held no
    protected domain, nor did the other hosts of the set), and every scenario that fails ``h``."""
    count = np.diff(old.host_start)
    if count[h] == 0:
        have = {tuple(row) for row in scen[(scen == h).any(axis=1)].tolist()}
        others = [x for x in range(old.n_hosts) if x != h]
        rows = [
            row
            for rest in itertools.combinations(others, r - 1)
            if not count[list(rest)].any() and (row := tuple(sorted((h, *rest)))) not in have
        ]
        if rows:
            scen = np.concatenate([scen, np.array(rows, dtype=np.int64).reshape(-1, r)])
    return scen, set(np.flatnonzero((scen == h).any(axis=1)).tolist())


def _reindex(
    index: dict[int, frozenset[int]],
    old: dict[int, ScenarioPlan],
    new: dict[int, ScenarioPlan],
    redone: set[int],
) -> dict[int, frozenset[int]]:
    """``index`` (host -> scenarios searched one by one that use it) after ``redone`` changed."""
    out = dict(index)
    for sigma in redone:
        for h, _ in old[sigma].placed.values() if sigma in old else ():
            out[h] = out[h] - {sigma}
        for h, _ in new[sigma].placed.values():
            out[h] = out.get(h, frozenset()) | {sigma}
    return out


def _bounded(state: FailoverState, new: Problem, changed: IntArray, n_guests: int) -> Admission:
    sl = state.slots if state.slots is not None else state.ctx.slots()
    sl = recount(new, sl, changed)
    for g in range(n_guests, len(new.guests)):
        sl = with_guest(new, sl, g)
    short = totals_fail(new, state.r)
    ctx = dataclasses.replace(state.ctx, prob=new, levels={}, slot_cache=[sl])
    ok = short is None and (
        slots_tolerate(new, sl, state.r) or reservations_tolerate(new, ctx.cls, ctx.cands, state.r)
    )
    st = dataclasses.replace(state, ctx=ctx, slots=sl)
    return Admission(tolerated=ok, exact=False, failed_hosts=short or (), stranded=(), state=st)


def _to_redo(
    state: FailoverState,
    old: Problem,
    new: Problem,
    hosts: tuple[HostChange, ...],
    domains: tuple[DomainChange, ...],
) -> tuple[IntArray, set[int], dict[int, ScenarioPlan]]:
    """The level's scenarios (new ones appended), those to search again, and those repaired."""
    lvl = state.level
    assert lvl.scen is not None and lvl.sweep is not None
    scen = lvl.scen
    redo: set[int] = set()
    for dc in domains:
        for h in {dc.host} | ({int(old.dom_host[dc.domain])} if dc.domain is not None else set()):
            scen, fails_h = _with_scenarios(scen, old, h, state.r)
            redo |= fails_h
    broken: list[tuple[int, IntArray]] = []
    for hc in hosts:
        if _gained_room(old, new, hc.host):  # a scenario that strands may now restart all
            redo |= set(np.flatnonzero((state.stranded > 0) | state.unproven).tolist())
        if _lost_room(old, new, hc.host):
            rows, packed = _broken_on(state, new, hc.host)
            redo |= packed
            broken.append((hc.host, rows))
    twice: set[int] = set()
    if len(broken) > 1:  # a scenario broken on two hosts is searched again
        sig_sets = [set(lvl.sweep.pairs.sigma[r].tolist()) for _, r in broken]
        twice = {s for i, a in enumerate(sig_sets) for b in sig_sets[i + 1 :] for s in a & b}
    redo |= twice
    repaired: dict[int, ScenarioPlan] = {}
    ctx = state.ctx
    for h, rows in broken:
        rows = rows[~np.isin(lvl.sweep.pairs.sigma[rows], np.fromiter(redo, dtype=np.int64))]
        plans, left = repair(new, ctx.cls, ctx.cands, lvl.sweep, scen, rows, h, state.bounds)
        repaired.update(plans)
        redo |= left
    return scen, redo, {s: p for s, p in repaired.items() if s not in redo}


def _verdict(
    ctx: Context, lvl: Level, stranded: IntArray
) -> tuple[tuple[int, ...], tuple[Unplaced, ...]]:
    """The scenario that strands the most (then, as the plan's worst, squeezes the most and
    leaves the least free), and why each of its stranded domains is."""
    if not stranded.any():
        return (), ()
    assert lvl.packed is not None
    packed = lvl.packed
    tied = np.flatnonzero(stranded == stranded.max()).tolist()  # each one searched one by one
    sigma = min(tied, key=lambda s: (-packed[s].squeeze_mib, packed[s].free_after_mib, s))
    plan = packed[sigma] if sigma in packed else swept_plan(ctx, lvl, sigma)
    prob = ctx.prob
    placed_mib = sum(int(load_of(prob, d, m).sum()) for d, (_, m) in plan.placed.items())
    why = tuple(
        Unplaced(domain=d, reason=reason(prob, plan.failed, d, placed_mib, plan.proven))
        for d in plan.unplaced
    )
    return plan.failed, why


def check_change(
    state: FailoverState,
    *,
    hosts: tuple[HostChange, ...] = (),
    domains: tuple[DomainChange, ...] = (),
) -> Admission:
    """Whether the plan's level is still tolerated after the change (see the module docstring)."""
    old = state.ctx.prob
    new = _apply(old, hosts, domains)
    lvl = state.level
    if lvl.scen is None or lvl.packed is None:
        changed = np.array(sorted({hc.host for hc in hosts}), dtype=np.int64)
        return _bounded(state, new, changed, len(old.guests))
    scen, redo, repaired = _to_redo(state, old, new, hosts, domains)
    ctx = dataclasses.replace(state.ctx, prob=new, levels={}, slot_cache=[])
    packed = dict(lvl.packed)
    packed.update(repaired)
    grow = scen.shape[0] - state.stranded.shape[0]
    stranded = np.concatenate([state.stranded, np.zeros(grow, np.int64)])
    unproven = np.concatenate([state.unproven, np.zeros(grow, bool)])
    for sigma in sorted(redo):
        failed = tuple(int(x) for x in scen[sigma])
        plan = solve(new, ctx.cls, ctx.cands, failed, ctx.search_nodes)
        packed[sigma] = plan
        stranded[sigma], unproven[sigma] = len(plan.unplaced), not plan.proven
    lvl2 = dataclasses.replace(lvl, scen=scen, packed=packed)
    st = FailoverState(
        ctx=ctx,
        r=state.r,
        level=lvl2,
        stranded=stranded,
        unproven=unproven,
        by_host=state.by_host,
        host_sorted=state.host_sorted,
        bounds=state.bounds,
        packed_on=_reindex(state.packed_on, lvl.packed, packed, redo | set(repaired)),
        slots=None,
    )
    failed_hosts, why = _verdict(ctx, lvl2, stranded)
    return Admission(
        tolerated=bool((stranded == 0).all() and not unproven.any()),
        exact=not unproven.any(),
        failed_hosts=failed_hosts,
        stranded=why,
        state=st,
    )
