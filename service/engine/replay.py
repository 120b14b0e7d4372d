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


@dataclass(frozen=True, eq=False)
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
    size = [int(s) for s in np.asarray(size_mib).tolist()]
    block = plan.block_mib
    block_pages = block * PAGES_PER_MIB
    starts: list[int] = []
    acc = 0
    for s in size:
        starts.append(acc)
        acc += s * PAGES_PER_MIB
    cap_s = [int(c) for c in np.asarray(capacity_src_mib).tolist()]
    oth_s = [int(c) for c in np.asarray(used_src_other_mib).tolist()]
    cap_d = [int(c) for c in np.asarray(capacity_dst_mib).tolist()]
    oth_d = [int(c) for c in np.asarray(used_dst_other_mib).tolist()]
    nv, ps, pd = len(size), len(cap_s), len(cap_d)
    src = [[int(x) for x in row] for row in plan.backing_before.tolist()]
    dst = [[0] * pd for _ in range(nv)]
    claims = [0] * pd
    level = [sum(row) for row in src]
    dmin = int(dynamic_min_mib)
    migrated = False
    phase_idx = 0
    totals: list[int] = []
    peak_s = [sum(src[v][p] for v in range(nv)) for p in range(ps)]
    peak_d = [0] * pd

    def check_state(seq: int) -> None:
        for v in range(nv):
            if not 0 <= level[v] <= size[v]:
                raise ReplayError(seq, f"vnode {v} pool {level[v]} outside 0..{size[v]}")
        total = sum(level)
        if total < dmin:
            raise ReplayError(seq, f"domain total {total} MiB below dynamic_min {dmin}")
        totals.append(total)
        for p in range(ps):
            use = sum(src[v][p] for v in range(nv))
            if any(src[v][p] < 0 for v in range(nv)):
                raise ReplayError(seq, f"negative source backing on pnode {p}")
            if use + oth_s[p] > cap_s[p]:
                raise ReplayError(seq, f"source pnode {p}: {use}+{oth_s[p]} > {cap_s[p]}")
            peak_s[p] = max(peak_s[p], use)
        for p in range(pd):
            use = sum(dst[v][p] for v in range(nv))
            if any(dst[v][p] < 0 for v in range(nv)):
                raise ReplayError(seq, f"negative destination backing on pnode {p}")
            if claims[p] + oth_d[p] > cap_d[p]:
                raise ReplayError(
                    seq, f"destination pnode {p}: claims {claims[p]} + {oth_d[p]} > {cap_d[p]}"
                )
            if use > claims[p]:
                raise ReplayError(seq, f"destination pnode {p}: backing {use} > claim {claims[p]}")
            peak_d[p] = max(peak_d[p], use)
        if not migrated:
            for v in range(nv):
                if sum(src[v]) != level[v]:
                    raise ReplayError(seq, f"vnode {v} source backing != pool level")
        else:
            for v in range(nv):
                if sum(dst[v]) != level[v]:
                    raise ReplayError(seq, f"vnode {v} destination backing != pool level")

    check_state(-1)
    for i, st in enumerate(plan.steps):
        seq = st.seq
        if seq != i:
            raise ReplayError(seq, f"seq {seq} at position {i}")
        if st.phase not in PHASES or PHASES.index(st.phase) < phase_idx:
            raise ReplayError(seq, f"phase {st.phase} out of order")
        phase_idx = PHASES.index(st.phase)
        if st.mib < 0:
            raise ReplayError(seq, "negative mib")
        if st.op == "claim":
            if st.phase != "claim" or st.host != "destination" or st.pnode is None:
                raise ReplayError(seq, "claim must be a destination claim-phase pnode step")
            claims[st.pnode] += st.mib
        elif st.op == "migrate":
            if st.phase != "migrate" or migrated:
                raise ReplayError(seq, "exactly one migrate step, in the migrate phase")
            carried = [int(x) for x in plan.backing_carried_mib.sum(axis=1).tolist()]
            if carried != level:
                raise ReplayError(seq, f"carried levels {carried} != pool levels {level}")
            if st.mib != sum(level) or st.target_mib != sum(level):
                raise ReplayError(seq, f"migrate carries {sum(level)} MiB, step says {st.mib}")
            dst = [[int(x) for x in row] for row in plan.backing_carried_mib.tolist()]
            migrated = True
        elif st.op == "release":
            if st.phase != "release" or st.host != "source" or st.pnode is None:
                raise ReplayError(seq, "release must be a source release-phase pnode step")
            have = sum(src[v][st.pnode] for v in range(nv))
            if st.mib != have:
                raise ReplayError(seq, f"release of {st.mib} MiB, pnode {st.pnode} holds {have}")
            for v in range(nv):
                src[v][st.pnode] = 0
        elif st.op in ("balloon", "plug", "unplug"):
            if st.vnode is None or st.pnode is None or st.target_mib is None:
                raise ReplayError(seq, "pool step needs vnode, pnode and target_mib")
            on_src = st.host == "source"
            if on_src != (st.phase == "prepare") or (not on_src and st.phase != "settle"):
                raise ReplayError(seq, f"{st.host} pool step in phase {st.phase}")
            v, p = st.vnode, st.pnode
            old, new = level[v], st.target_mib
            if abs(new - old) != st.mib:
                raise ReplayError(seq, f"target {new} from {old} is not a {st.mib} MiB change")
            grid = src if on_src else dst
            grid[v][p] += new - old
            level[v] = new
            if not 0 <= new <= size[v]:
                raise ReplayError(seq, f"vnode {v} pool {new} outside 0..{size[v]}")
            ob, nb = -(-old // block), -(-new // block)
            want = set(range(min(ob, nb), max(ob, nb)))
            named = _blocks(st, (starts[v], starts[v] + size[v] * PAGES_PER_MIB), block_pages, seq)
            expect_op = "balloon" if ob == nb else ("plug" if nb > ob else "unplug")
            if st.op != expect_op:
                raise ReplayError(seq, f"{st.op} changes plugged blocks {ob}->{nb}")
            if named != want:
                raise ReplayError(
                    seq,
                    f"PFN ranges name blocks {sorted(named)[:4]}..., "
                    f"expected {sorted(want)[:4]}...",
                )
        else:
            raise ReplayError(seq, f"unknown op {st.op}")
        check_state(seq)
    if not migrated:
        raise ReplayError(-1, "plan has no migrate step")
    final = np.array(dst, dtype=np.int64).reshape(nv, pd)
    if not np.array_equal(final, plan.backing_after):
        raise ReplayError(-1, "final destination backing differs from backing_after")
    left = sum(sum(row) for row in src)
    if left:
        raise ReplayError(-1, f"{left} MiB left on the source")
    return ReplayTrace(
        totals_mib=tuple(totals),
        min_total_mib=min(totals),
        peak_src_mib=np.array(peak_s, dtype=np.int64),
        peak_dst_mib=np.array(peak_d, dtype=np.int64),
        claims_mib=np.array(claims, dtype=np.int64),
        final_backing_mib=final,
    )
