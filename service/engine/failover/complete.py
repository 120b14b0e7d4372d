"""A scenario's restarts, proven: the greedy of ``pack`` and, when it strands domains, the
complete search that strands as few as possible (see ``pack``'s docstring)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from service.engine.failover.candidates import Candidates
from service.engine.failover.classes import Classes
from service.engine.failover.pack import (
    Budget,
    OutOfBudget,
    Residual,
    ScenarioPlan,
    alive_mask,
    fits_alone,
    greedy,
    load_of,
    options,
    scenario_domains,
)
from service.engine.failover.problem import Problem

IntArray = NDArray[np.int64]
Placed = dict[int, tuple[int, IntArray]]


def finish(
    prob: Problem,
    failed: tuple[int, ...],
    placed: Placed,
    order: list[int],
    proven: bool,
    nodes: int = 0,
) -> ScenarioPlan:
    """The plan's figures: MiB squeezed (restarts beyond what is free now on their pnodes) and
    MiB left free now on the eligible survivors after the restarts."""
    loads: dict[int, IntArray] = {}
    for d, (h, m) in placed.items():
        loads[h] = loads.get(h, 0) + load_of(prob, d, m)
    squeeze = used = 0
    for h, ld in loads.items():
        squeeze += int(np.maximum(ld - prob.now[h], 0).sum())
        used += int(np.minimum(ld, prob.now[h]).sum())
    return ScenarioPlan(
        failed=failed,
        placed=placed,
        unplaced=tuple(d for d in order if d not in placed),
        proven=proven,
        squeeze_mib=squeeze,
        free_after_mib=prob.now_eligible_total - int(prob.now_eligible[list(failed)].sum()) - used,
        nodes=nodes,
    )


def _host_key(prob: Problem, h: int, rem: IntArray, canonical: bool) -> tuple[object, ...]:
    if canonical:
        return (int(prob.n_bins[h]), tuple(sorted(rem[: int(prob.n_bins[h])].tolist())))
    return (int(prob.shape[h]), rem.tobytes())


def _most_placed(
    prob: Problem, rest: list[int], alone: dict[int, list[int]], best: Placed, budget: Budget
) -> Placed:
    """Depth-first search for a plan restarting the most of ``rest`` (``best``: a plan to beat).
    Raises OutOfBudget; ``best`` then holds the best plan found so far."""
    canonical = not prob.spread and all(
        prob.guests[int(prob.dom_guest[d])].limit is None for d in rest
    )
    res = Residual(prob=prob)
    cur: Placed = {}

    def dfs(i: int, skipped: int) -> None:
        if len(rest) - skipped <= len(best):
            return
        if i == len(rest):
            best.clear()
            best.update(cur)
            return
        budget.tick()
        d = rest[i]
        seen: set[tuple[object, ...]] = set()
        for h in alone[d]:
            budget.tick()  # hosts count too: a domain may fit thousands of them
            rem = res.of(h)
            key = _host_key(prob, h, rem, canonical)
            if key in seen:
                continue
            seen.add(key)
            for m, load in options(prob, d, h, rem, canonical, budget):
                res.take(h, load)
                cur[d] = (h, m)
                dfs(i + 1, skipped)
                res.give(h, load)
                del cur[d]
                if len(best) == len(rest):
                    return
        dfs(i + 1, skipped + 1)

    dfs(0, 0)
    return best


def _most_by_memory(prob: Problem, rest: list[int], alone: dict[int, list[int]]) -> int:
    """How many of ``rest`` could restart at most, counting memory alone: the smallest first,
    while their MiB fit what the hosts that can take any of them free in total."""
    if not rest:
        return 0
    hosts = np.unique(np.concatenate([np.array(alone[d], dtype=np.int64) for d in rest]))
    room = int(prob.full[hosts].sum())
    need = np.cumsum(np.sort(prob.dom_total[np.array(rest, dtype=np.int64)]))
    return int(np.searchsorted(need, room, side="right"))


def solve(
    prob: Problem, cls: Classes, cands: Candidates, failed: tuple[int, ...], budget_nodes: int
) -> ScenarioPlan:
    """Restart the domains of the failed hosts; prove the plan strands as few as possible."""
    order = scenario_domains(prob, failed)
    placed, left, _ = greedy(prob, cls, cands, failed)
    if not left:
        return finish(prob, failed, placed, order, proven=True)
    alive = alive_mask(prob, failed)
    budget = Budget(nodes=budget_nodes)
    alone: dict[int, list[int]] = {}
    unknown = False
    for d in order:
        alone[d], unk = fits_alone(prob, d, alive)
        unknown |= unk
    rest = [d for d in order if alone[d]]
    best: Placed = {d: placed[d] for d in rest if d in placed}
    if len(best) >= _most_by_memory(prob, rest, alone):
        return finish(prob, failed, best, order, proven=not unknown)
    # Roomiest hosts first: plans that restart everything are found early.
    for d in rest:
        alone[d].sort(key=lambda h: (-int(prob.full[h].sum()), h))
    try:
        _most_placed(prob, rest, alone, best, budget)
    except OutOfBudget:
        return finish(prob, failed, best, order, proven=False, nodes=budget.spent)
    return finish(prob, failed, best, order, proven=not unknown, nodes=budget.spent)
