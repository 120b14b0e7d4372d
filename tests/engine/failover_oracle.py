"""Brute-force oracle for the failover planner: every scenario, every assignment.

For each set of r failed hosts, every protected domain of the failed hosts is tried on every
eligible surviving host with every mapping of its vnodes to that host's pnodes (itertools.product),
or left out; capacities are decremented as domains are placed. The fewest domains that must be
left out is the scenario's answer. The only pruning is the obvious one: a branch that cannot leave
out fewer domains than the best found is abandoned. Nothing here imports the planner.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TOL = 1e-9


@dataclass(frozen=True)
class OHost:
    free: tuple[int, ...]  # per pnode, free now
    squeezable: tuple[int, ...]
    pdist: tuple[tuple[int, ...], ...]
    eligible: bool

    @property
    def full(self) -> tuple[int, ...]:
        return tuple(f + s for f, s in zip(self.free, self.squeezable, strict=True))


@dataclass(frozen=True)
class ODomain:
    host: int
    restart: tuple[int, ...]
    vcpus: tuple[int, ...]
    vdist: tuple[tuple[int, ...], ...]
    limit: float | None


def distortion(dom: ODomain, pdist: Sequence[Sequence[int]], mapping: Sequence[int]) -> float:
    den = sum(dom.vcpus) * sum(dom.restart)
    if den == 0:
        return 0.0
    v = len(dom.restart)
    num = 0
    for a in range(v):
        for b in range(v):
            num += (
                dom.vcpus[a] * dom.restart[b] * abs(dom.vdist[a][b] - pdist[mapping[a]][mapping[b]])
            )
    return num / den


def within(dom: ODomain, pdist: Sequence[Sequence[int]], mapping: Sequence[int]) -> bool:
    return dom.limit is None or distortion(dom, pdist, mapping) <= dom.limit + TOL


def _options(dom: ODomain, host: OHost) -> list[tuple[int, ...]]:
    """Every mapping of the domain's vnodes to the host's pnodes within its limit."""
    p = len(host.free)
    return [
        m
        for m in itertools.product(range(p), repeat=len(dom.restart))
        if within(dom, host.pdist, m)
    ]


def min_unplaced(
    hosts: Sequence[OHost], domains: Sequence[ODomain], failed: Sequence[int], spread: bool
) -> int:
    """Fewest protected domains of the failed hosts that no restart plan can place."""
    alive = [h for h in range(len(hosts)) if hosts[h].eligible and h not in failed]
    todo = [d for d in domains if d.host in failed]
    rem = {h: list(hosts[h].full) for h in alive}
    opts = {(i, h): _options(d, hosts[h]) for i, d in enumerate(todo) for h in alive}
    best = [len(todo)]

    def rec(i: int, left_out: int) -> None:
        if left_out >= best[0]:
            return
        if i == len(todo):
            best[0] = left_out
            return
        d = todo[i]
        for h in alive:
            maps = opts[(i, h)]
            if spread:
                if maps and sum(rem[h]) >= sum(d.restart):
                    # memory anywhere on the host: take it from the pnodes in order
                    taken = _take_anywhere(rem[h], sum(d.restart))
                    rec(i + 1, left_out)
                    for p, x in taken:
                        rem[h][p] += x
                continue
            for m in maps:
                load = [0] * len(rem[h])
                for v, p in enumerate(m):
                    load[p] += d.restart[v]
                if all(x <= r for x, r in zip(load, rem[h], strict=True)):
                    for p, x in enumerate(load):
                        rem[h][p] -= x
                    rec(i + 1, left_out)
                    for p, x in enumerate(load):
                        rem[h][p] += x
        rec(i + 1, left_out + 1)

    rec(0, 0)
    return best[0]


def _take_anywhere(rem: list[int], need: int) -> list[tuple[int, int]]:
    taken = []
    for p in range(len(rem)):
        x = min(rem[p], need)
        if x:
            rem[p] -= x
            taken.append((p, x))
            need -= x
    return taken


@dataclass(frozen=True)
class OracleLevel:
    tolerated: bool
    worst_unplaced: int  # max over scenarios of the fewest domains left out
    per_scenario: dict[tuple[int, ...], int]


def level(hosts: Sequence[OHost], domains: Sequence[ODomain], r: int, spread: bool) -> OracleLevel:
    per = {
        f: min_unplaced(hosts, domains, f, spread)
        for f in itertools.combinations(range(len(hosts)), r)
    }
    worst = max(per.values(), default=0)
    return OracleLevel(tolerated=worst == 0, worst_unplaced=worst, per_scenario=per)


def max_host_failures(hosts: Sequence[OHost], domains: Sequence[ODomain], spread: bool) -> int:
    """Largest r tolerated, every r checked (monotonicity is not assumed here)."""
    ok = [level(hosts, domains, r, spread).tolerated for r in range(len(hosts) + 1)]
    return max(r for r, t in enumerate(ok) if t)


def restart_fits(
    hosts: Sequence[OHost],
    domains: Sequence[ODomain],
    failed: Sequence[int],
    restarts: Sequence[tuple[int, int, tuple[int, ...]]],
    spread: bool,
) -> None:
    """Assert a restart plan [(domain, host, mapping)] is valid for the scenario ``failed``."""
    used = {h: [0] * len(hosts[h].free) for h in range(len(hosts))}
    seen = set()
    for d, h, m in restarts:
        assert d not in seen, f"domain {d} placed twice"
        seen.add(d)
        dom = domains[d]
        assert dom.host in failed, f"domain {d} did not fail"
        assert hosts[h].eligible and h not in failed, f"domain {d} on a failed/ineligible host"
        assert len(m) == len(dom.restart)
        assert within(dom, hosts[h].pdist, m), f"domain {d} beyond its distortion limit"
        for v, p in enumerate(m):
            used[h][p] += dom.restart[v]
    for h, u in used.items():
        if spread:
            assert sum(u) <= sum(hosts[h].full), f"host {h} overcommitted"
        else:
            assert all(x <= f for x, f in zip(u, hosts[h].full, strict=True)), f"host {h} over"


def as_arrays(hosts: Sequence[OHost]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(h.free) for h in hosts)
    free = np.zeros((len(hosts), width), dtype=np.int64)
    sq = np.zeros((len(hosts), width), dtype=np.int64)
    for i, h in enumerate(hosts):
        free[i, : len(h.free)] = h.free
        sq[i, : len(h.free)] = h.squeezable
    return free, sq
