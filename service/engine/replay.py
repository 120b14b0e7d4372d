"""Step-by-step replay of a migration plan: the oracle that property tests check plans against.

Deliberately plain loops and explicit state: it must be obviously correct, not fast.  It trusts
nothing in the plan but its steps, its start backing, its final backing and the destination
backing the migrate step lands (``backing_carried_mib``: steps do not say where each carried MiB
lands, so the plan declares it and the replayer checks it against the claims and the levels).

Per step it checks: phase order and ``seq``; the host each op runs on; that ``target_mib`` is
``level -/+ mib``; that block ops name exactly the hotplug blocks whose plugged state changes
(``plugged = ceil(level / block)``), block-aligned and inside the vnode's span, and that balloon
ops change no block; every pool in ``0..size``; the domain total never below ``dynamic_min``;
per pnode, source usage + others ``<= capacity``, destination others + claims ``<= capacity``
and the domain's destination backing ``<=`` its claims.  At the end: the destination backing
equals ``backing_after`` and nothing is left on the source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import EngineError
from .migration import PHASES, MigrationPlan, PlanStep
from .topology import PAGES_PER_MIB

__all__ = ["ReplayError", "ReplayTrace", "replay"]

I64 = NDArray[np.int64]


class ReplayError(EngineError):
    """A plan step leads to an invalid state; ``seq`` is the offending step (-1: the plan)."""

    def __init__(self, seq: int, message: str) -> None:
        self.seq = seq
        self.message = message
        super().__init__(f"step {seq}: {message}")


@dataclass(frozen=True, eq=False, kw_only=True)
class ReplayTrace:
    """What the replay saw: the domain total after each step and the per-pnode peaks."""

    totals_mib: tuple[int, ...]
    min_total_mib: int
    peak_src_mib: I64  # (Ps,) domain usage peak on the source
    peak_dst_mib: I64  # (Pd,) domain backing peak on the destination
    claims_mib: I64  # (Pd,) claimed at the end (before conversion)
    final_backing_mib: I64  # (V, Pd)


def _blocks(step: PlanStep, span: tuple[int, int], block_pages: int, seq: int) -> set[int]:
    """Block indices (within the vnode) named by a step's PFN ranges; each must be aligned."""
    base, end = span
    out: set[int] = set()
    for lo, hi in step.pfn_ranges:
        if not base <= lo < hi <= end:
            raise ReplayError(seq, f"PFN range [{lo}, {hi}) outside vnode span [{base}, {end})")
        if (lo - base) % block_pages or (hi - base) % block_pages:
            raise ReplayError(seq, f"PFN range [{lo}, {hi}) is not block-aligned")
        for k in range((lo - base) // block_pages, (hi - base) // block_pages):
            if k in out:
                raise ReplayError(seq, f"block {k} named twice")
            out.add(k)
    return out


class _Replayer:
    """The explicit state a replay walks: pool levels, source and destination backing, claims.

    Lists of ints on purpose (see the module docstring): obviously correct, not fast."""

    def __init__(self, plan: MigrationPlan, env: dict[str, ArrayLike], dynamic_min: int) -> None:
        self.plan = plan
        self.size = [int(s) for s in np.asarray(env["size_mib"]).tolist()]
        self.block = plan.block_mib
        self.block_pages = self.block * PAGES_PER_MIB
        self.starts: list[int] = []
        acc = 0
        for s in self.size:
            self.starts.append(acc)
            acc += s * PAGES_PER_MIB
        self.cap_s = [int(c) for c in np.asarray(env["capacity_src_mib"]).tolist()]
        self.oth_s = [int(c) for c in np.asarray(env["used_src_other_mib"]).tolist()]
        self.cap_d = [int(c) for c in np.asarray(env["capacity_dst_mib"]).tolist()]
        self.oth_d = [int(c) for c in np.asarray(env["used_dst_other_mib"]).tolist()]
        nv, ps, pd = len(self.size), len(self.cap_s), len(self.cap_d)
        self.nv, self.ps, self.pd = nv, ps, pd
        self.src = [[int(x) for x in row] for row in plan.backing_before.tolist()]
        self.dst = [[0] * pd for _ in range(nv)]
        self.claims = [0] * pd
        self.level = [sum(row) for row in self.src]
        self.dmin = dynamic_min
        self.migrated = False
        self.phase_idx = 0
        self.totals: list[int] = []
        self.peak_s = [sum(self.src[v][p] for v in range(nv)) for p in range(ps)]
        self.peak_d = [0] * pd

    # ----------------------------------------------------------------- invariants

    def check_state(self, seq: int) -> None:
        """Every invariant of the module docstring on the current state; records peaks."""
        nv, level, size = self.nv, self.level, self.size
        for v in range(nv):
            if not 0 <= level[v] <= size[v]:
                raise ReplayError(seq, f"vnode {v} pool {level[v]} outside 0..{size[v]}")
        total = sum(level)
        if total < self.dmin:
            raise ReplayError(seq, f"domain total {total} MiB below dynamic_min {self.dmin}")
        self.totals.append(total)
        self._check_source(seq)
        self._check_destination(seq)
        grid, where = (self.dst, "destination") if self.migrated else (self.src, "source")
        for v in range(nv):
            if sum(grid[v]) != level[v]:
                raise ReplayError(seq, f"vnode {v} {where} backing != pool level")

    def _check_source(self, seq: int) -> None:
        src, nv = self.src, self.nv
        for p in range(self.ps):
            use = sum(src[v][p] for v in range(nv))
            if any(src[v][p] < 0 for v in range(nv)):
                raise ReplayError(seq, f"negative source backing on pnode {p}")
            if use + self.oth_s[p] > self.cap_s[p]:
                raise ReplayError(seq, f"source pnode {p}: {use}+{self.oth_s[p]} > {self.cap_s[p]}")
            self.peak_s[p] = max(self.peak_s[p], use)

    def _check_destination(self, seq: int) -> None:
        dst, nv, claims = self.dst, self.nv, self.claims
        for p in range(self.pd):
            use = sum(dst[v][p] for v in range(nv))
            if any(dst[v][p] < 0 for v in range(nv)):
                raise ReplayError(seq, f"negative destination backing on pnode {p}")
            if claims[p] + self.oth_d[p] > self.cap_d[p]:
                raise ReplayError(
                    seq,
                    f"destination pnode {p}: claims {claims[p]} + {self.oth_d[p]} > "
                    f"{self.cap_d[p]}",
                )
            if use > claims[p]:
                raise ReplayError(seq, f"destination pnode {p}: backing {use} > claim {claims[p]}")
            self.peak_d[p] = max(self.peak_d[p], use)

    # ----------------------------------------------------------------- steps

    def step(self, i: int, st: PlanStep) -> None:
        """Check a step's numbering and phase, apply it, then check the state."""
        seq = st.seq
        if seq != i:
            raise ReplayError(seq, f"seq {seq} at position {i}")
        if st.phase not in PHASES or PHASES.index(st.phase) < self.phase_idx:
            raise ReplayError(seq, f"phase {st.phase} out of order")
        self.phase_idx = PHASES.index(st.phase)
        if st.mib < 0:
            raise ReplayError(seq, "negative mib")
        if st.op == "claim":
            if st.phase != "claim" or st.host != "destination" or st.pnode is None:
                raise ReplayError(seq, "claim must be a destination claim-phase pnode step")
            self.claims[st.pnode] += st.mib
        elif st.op == "migrate":
            self._migrate(st)
        elif st.op == "release":
            self._release(st)
        elif st.op in ("balloon", "plug", "unplug"):
            self._pool(st)
        else:
            raise ReplayError(seq, f"unknown op {st.op}")
        self.check_state(seq)

    def _migrate(self, st: PlanStep) -> None:
        seq, level = st.seq, self.level
        if st.phase != "migrate" or self.migrated:
            raise ReplayError(seq, "exactly one migrate step, in the migrate phase")
        carried = [int(x) for x in self.plan.backing_carried_mib.sum(axis=1).tolist()]
        if carried != level:
            raise ReplayError(seq, f"carried levels {carried} != pool levels {level}")
        if st.mib != sum(level) or st.target_mib != sum(level):
            raise ReplayError(seq, f"migrate carries {sum(level)} MiB, step says {st.mib}")
        self.dst = [[int(x) for x in row] for row in self.plan.backing_carried_mib.tolist()]
        self.migrated = True

    def _release(self, st: PlanStep) -> None:
        seq = st.seq
        if st.phase != "release" or st.host != "source" or st.pnode is None:
            raise ReplayError(seq, "release must be a source release-phase pnode step")
        have = sum(self.src[v][st.pnode] for v in range(self.nv))
        if st.mib != have:
            raise ReplayError(seq, f"release of {st.mib} MiB, pnode {st.pnode} holds {have}")
        for v in range(self.nv):
            self.src[v][st.pnode] = 0

    def _pool(self, st: PlanStep) -> None:
        seq = st.seq
        if st.vnode is None or st.pnode is None or st.target_mib is None:
            raise ReplayError(seq, "pool step needs vnode, pnode and target_mib")
        on_src = st.host == "source"
        if on_src != (st.phase == "prepare") or (not on_src and st.phase != "settle"):
            raise ReplayError(seq, f"{st.host} pool step in phase {st.phase}")
        v, p = st.vnode, st.pnode
        old, new = self.level[v], st.target_mib
        if abs(new - old) != st.mib:
            raise ReplayError(seq, f"target {new} from {old} is not a {st.mib} MiB change")
        grid = self.src if on_src else self.dst
        grid[v][p] += new - old
        self.level[v] = new
        if not 0 <= new <= self.size[v]:
            raise ReplayError(seq, f"vnode {v} pool {new} outside 0..{self.size[v]}")
        self._check_blocks(st, v, old, new)

    def _check_blocks(self, st: PlanStep, v: int, old: int, new: int) -> None:
        """A pool step's op and PFN ranges against the plugged blocks it changes."""
        seq, block = st.seq, self.block
        ob, nb = -(-old // block), -(-new // block)
        want = set(range(min(ob, nb), max(ob, nb)))
        span = (self.starts[v], self.starts[v] + self.size[v] * PAGES_PER_MIB)
        named = _blocks(st, span, self.block_pages, seq)
        expect_op = "balloon" if ob == nb else ("plug" if nb > ob else "unplug")
        if st.op != expect_op:
            raise ReplayError(seq, f"{st.op} changes plugged blocks {ob}->{nb}")
        if named != want:
            raise ReplayError(
                seq,
                f"PFN ranges name blocks {sorted(named)[:4]}..., expected {sorted(want)[:4]}...",
            )

    def finish(self) -> ReplayTrace:
        """The end checks (migrated, destination == backing_after, source empty)."""
        if not self.migrated:
            raise ReplayError(-1, "plan has no migrate step")
        final = np.array(self.dst, dtype=np.int64).reshape(self.nv, self.pd)
        if not np.array_equal(final, self.plan.backing_after):
            raise ReplayError(-1, "final destination backing differs from backing_after")
        left = sum(sum(row) for row in self.src)
        if left:
            raise ReplayError(-1, f"{left} MiB left on the source")
        return ReplayTrace(
            totals_mib=tuple(self.totals),
            min_total_mib=min(self.totals),
            peak_src_mib=np.array(self.peak_s, dtype=np.int64),
            peak_dst_mib=np.array(self.peak_d, dtype=np.int64),
            claims_mib=np.array(self.claims, dtype=np.int64),
            final_backing_mib=final,
        )


def replay(
    plan: MigrationPlan,
    *,
    size_mib: ArrayLike,
    dynamic_min_mib: int,
    capacity_src_mib: ArrayLike,
    used_src_other_mib: ArrayLike,
    capacity_dst_mib: ArrayLike,
    used_dst_other_mib: ArrayLike,
) -> ReplayTrace:
    """Apply every step of ``plan`` in order, checking every intermediate state."""
    if not plan.feasible:
        raise ReplayError(-1, f"plan is infeasible: {plan.reason}")
    env = {
        "size_mib": size_mib,
        "capacity_src_mib": capacity_src_mib,
        "used_src_other_mib": used_src_other_mib,
        "capacity_dst_mib": capacity_dst_mib,
        "used_dst_other_mib": used_dst_other_mib,
    }
    state = _Replayer(plan, env, int(dynamic_min_mib))
    state.check_state(-1)
    for i, st in enumerate(plan.steps):
        state.step(i, st)
    return state.finish()
