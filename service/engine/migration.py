"""Migration plans between hosts whose NUMA topologies differ (the seed thread's re-pooling).

The guest's virtual topology (SRAT/SLIT) is fixed, so moving it to another host means re-filling
its vnode pools so that virtual distances match the destination's physical ones: shrink on the
source the pools the destination wants smaller, carry the rest over, grow on the destination.

Semantics chosen here (the HTTP layer and the replayer rely on them):

* **Destination**: the mapping comes from ``place()`` with the source per-vnode targets as demand
  (scaled to what the destination can hold); pool levels and backing come from ``distribute()``
  with the domain's policy and that mapping as homes.  ``target_after = min(target_before,
  what the destination can back)``; below ``dynamic_min`` the plan is infeasible (not raised, so
  a dry run can show why).  ``explicit`` keeps the per-vnode targets and cannot shrink.
* **Carried levels** ``t_mid``: what the migrate step carries per vnode.  ``t_mid <= t_before``
  (the source only shrinks: we do not know its free memory) and ``sum(t_mid) >= dynamic_min``.
  ``rebalance`` carries ``min(t_before, t_after)``: only what must shrink shrinks on the source,
  only what must grow grows on the destination.  ``replug`` carries the boot minimum
  ``boot = clamp(boot_mib or dynamic_min, dynamic_min, min(target_before, target_after))``: every
  other block is unplugged (the thread's "unplug all, replug with the new topology").  Both fill
  the carried amount into the pools the destination keeps largest, first up to
  ``min(t_before, t_after)``, and only then above ``t_after``.
* **dynamic_min guard**: when ``sum(min(t_before, t_after)) < dynamic_min`` some pool must be
  carried *above* its destination level (the seed case: a 1-node host filled the near pools, the
  16-node host wants the far ones).  That *surplus* is shrunk on the destination during settle.
  Prepare only shrinks, monotonically down to ``sum(t_mid) >= dynamic_min``.  Settle runs in
  three sub-phases so the total never drops below ``dynamic_min``: (A) grow where claimed room is
  free, (B) shrink the surplus, (C) grow into the room (B) freed.  The surplus is backed first in
  destination memory beyond the final backing (spare), then in "growth slots" (claimed memory
  that growing pools take later); the total after (B) is ``target_after - slot_surplus``, so a
  plan with ``slot_surplus > target_after - dynamic_min`` is infeasible with a reason.
* **Claims** ``claims_mib[p] = backing_after[:, p].sum() + spare surplus on p``: the destination
  backing never exceeds it at any step, and it never exceeds ``free_dst_mib``.
* **Steps**: a pool change ``a -> b`` on one pnode is split at block boundaries: shrinking unplugs
  the whole blocks above ``block * ceil(b / block)`` (PFN ranges, one per block) and balloons the
  rest; growing balloons up to the top of the partly plugged block and plugs the blocks above.
  Plugged blocks are ``ceil(t / block)`` from the bottom of the vnode's span.  The source sheds
  the memory farthest from the vnode's home pnode first.  ``release`` has one step per source
  pnode the domain used (``mib`` = what remained there, possibly 0).
* ``moved_mib`` = every MiB taken out of or put into a pool (sum of balloon/unplug/plug step
  MiB).  It equals ``sum |t_after - t_before|`` for ``rebalance`` unless a surplus is needed, and
  counts every unplugged-and-replugged MiB twice for ``replug``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .distribute import POLICIES, Policy, apportion, distribute
from .errors import InfeasibleError, InputError
from .inputs import int_array
from .metrics import distortion, remote_fraction
from .place import place
from .topology import VirtualTopology

__all__ = [
    "PHASES",
    "MigrationPlan",
    "Op",
    "Phase",
    "PlanStep",
    "Strategy",
    "plan_migration",
]

I64 = NDArray[np.int64]
Phase = Literal["claim", "prepare", "migrate", "settle", "release"]
Op = Literal["claim", "balloon", "unplug", "plug", "migrate", "release"]
Strategy = Literal["rebalance", "replug"]
Host = Literal["source", "destination"]
PHASES: tuple[Phase, ...] = ("claim", "prepare", "migrate", "settle", "release")


@dataclass(frozen=True)
class PlanStep:
    """One action for one host agent; ``target_mib`` is the vnode pool level after it."""

    seq: int
    phase: Phase
    op: Op
    host: Host
    vnode: int | None
    pnode: int | None
    mib: int
    pfn_ranges: tuple[tuple[int, int], ...]
    target_mib: int | None


@dataclass(frozen=True, eq=False)
class MigrationPlan:
    """A complete, replayable plan; ``feasible=False`` plans carry a reason and no steps."""

    feasible: bool
    reason: str
    strategy: Strategy
    mapping_before: I64
    mapping_after: I64
    backing_before: I64
    backing_after: I64
    claims_mib: I64
    target_before_mib: int
    target_after_mib: int
    steps: tuple[PlanStep, ...]
    moved_mib: int
    distortion_before: float
    distortion_after: float
    remote_fraction_before: float
    remote_fraction_after: float
    carried_mib: I64  # (V,) pool levels carried by the migrate step
    backing_carried_mib: I64  # (V, Pd) destination backing right after the migrate step
    block_mib: int = 128


def _fill_ordered(amount: int, cap: I64, order: NDArray[np.intp]) -> I64:
    """Give ``amount`` to slots in ``order``, each up to ``cap``: a cumulative clip, no loop."""
    cap_o = cap[order]
    before = np.cumsum(cap_o) - cap_o
    got = np.clip(amount - before, 0, cap_o)
    out = np.zeros_like(cap)
    out[order] = got
    return out


def _keep_nearest(x: I64, keep: I64, home: I64, pdist: I64) -> I64:
    """Sub-backing of ``x`` with row sums ``keep``: memory nearest the vnode's home stays."""
    ordv = np.argsort(pdist, axis=1, kind="stable")[home]  # (V, P), home first
    x_o = np.take_along_axis(x, ordv, axis=1)
    before = np.cumsum(x_o, axis=1) - x_o
    kept_o = np.clip(keep[:, None] - before, 0, x_o)
    out = np.zeros_like(x)
    np.put_along_axis(out, ordv, kept_o, axis=1)
    return out


def _interval_alloc(amounts: I64, bins: I64) -> I64:
    """(len(amounts), len(bins)) allocation of consecutive amounts into consecutive bins.

    Both are laid end to end on one line; entry [i, j] is the overlap of amount i's interval
    with bin j's interval.  Requires ``amounts.sum() <= bins.sum()``.
    """
    a_hi = np.cumsum(amounts)
    a_lo = a_hi - amounts
    b_hi = np.cumsum(bins)
    b_lo = b_hi - bins
    lo = np.maximum(a_lo[:, None], b_lo[None, :])
    hi = np.minimum(a_hi[:, None], b_hi[None, :])
    out: I64 = np.maximum(hi - lo, 0)
    return out


def _carry(t_before: I64, t_after: I64, amount: int) -> I64:
    """Per-vnode carried levels summing to ``amount``, in the pools the destination keeps largest.

    First up to ``min(t_before, t_after)`` (no surplus), then up to ``t_before``.
    """
    low = np.minimum(t_before, t_after)
    order = np.argsort(-t_after, kind="stable")
    first = _fill_ordered(min(amount, int(low.sum())), low, order)
    rest = amount - int(first.sum())
    return first + _fill_ordered(rest, t_before - low, order)


@dataclass(frozen=True)
class _Chunks:
    """Pool changes of one sub-phase, one per (vnode, pnode), in emission order."""

    vnode: I64
    pnode: I64
    start: I64  # pool level before the change
    end: I64  # pool level after


def _chunks(delta: I64, level0: I64) -> _Chunks:
    """Chunks of a signed (V, P) change applied vnode by vnode, pnode by pnode."""
    before = level0[:, None] + np.cumsum(delta, axis=1) - delta
    v, p = np.nonzero(delta)
    return _Chunks(v.astype(np.int64), p.astype(np.int64), before[v, p], before[v, p] + delta[v, p])


def _split_blocks(c: _Chunks, block: int) -> tuple[I64, I64, I64, I64, NDArray[np.bool_]]:
    """Split chunks at block boundaries: (vnode, pnode, start, end, is_block_step) arrays.

    Shrink a->b: unplug a->min(a, B*ceil(b/B)), balloon the rest.  Grow a->b: balloon
    a->min(b, B*ceil(a/B)), plug the rest.  Steps of one chunk stay adjacent, in that order.
    """
    a, b = c.start, c.end
    shrink = b < a
    mid = np.where(
        shrink, np.minimum(a, -(-b // block) * block), np.minimum(b, -(-a // block) * block)
    )
    # first half: unplug (shrink) or balloon (grow); second: balloon (shrink) or plug (grow)
    s0, e0, s1, e1 = a, mid, mid, b
    blk0, blk1 = shrink, ~shrink
    n = a.shape[0]
    vv = np.repeat(c.vnode, 2)
    pp = np.repeat(c.pnode, 2)
    ss = np.empty(2 * n, dtype=np.int64)
    ee = np.empty(2 * n, dtype=np.int64)
    bb = np.empty(2 * n, dtype=bool)
    ss[0::2], ss[1::2] = s0, s1
    ee[0::2], ee[1::2] = e0, e1
    bb[0::2], bb[1::2] = blk0, blk1
    keep = ss != ee
    return vv[keep], pp[keep], ss[keep], ee[keep], bb[keep]


def _infeasible(
    reason: str,
    strategy: Strategy,
    backing_src: I64,
    home_src: I64,
    pd: int,
    target_before: int,
    d_before: float,
    r_before: float,
    block: int,
) -> MigrationPlan:
    v = backing_src.shape[0]
    empty = np.zeros((v, pd), dtype=np.int64)
    return MigrationPlan(
        feasible=False,
        reason=reason,
        strategy=strategy,
        mapping_before=home_src,
        mapping_after=np.zeros(v, dtype=np.int64),
        backing_before=backing_src,
        backing_after=empty,
        claims_mib=np.zeros(pd, dtype=np.int64),
        target_before_mib=target_before,
        target_after_mib=0,
        steps=(),
        moved_mib=0,
        distortion_before=d_before,
        distortion_after=0.0,
        remote_fraction_before=r_before,
        remote_fraction_after=0.0,
        carried_mib=np.zeros(v, dtype=np.int64),
        backing_carried_mib=empty,
        block_mib=block,
    )


def plan_migration(
    *,
    size_mib: ArrayLike,
    vcpus_per_vnode: ArrayLike,
    vdist: ArrayLike,
    block_mib: int,
    dynamic_min_mib: int,
    dynamic_max_mib: int,
    backing_src: ArrayLike,
    home_src: ArrayLike,
    pdist_src: ArrayLike,
    free_dst_mib: ArrayLike,
    cpus_dst: ArrayLike,
    pdist_dst: ArrayLike,
    load_vcpus_dst: ArrayLike,
    policy: str = "faithful",
    strategy: Strategy = "rebalance",
    boot_mib: int | None = None,
) -> MigrationPlan:
    """Plan moving one domain from its source backing to a destination host.

    Malformed inputs raise ``InputError``; a destination that cannot take the domain gives a
    plan with ``feasible=False`` and the reason.  See the module docstring for the semantics.
    """
    size = int_array(size_mib, "size_mib", 1)
    cw = int_array(vcpus_per_vnode, "vcpus_per_vnode", 1)
    vd = int_array(vdist, "vdist", 2)
    xs = int_array(backing_src, "backing_src", 2)
    hs = int_array(home_src, "home_src", 1)
    pds = int_array(pdist_src, "pdist_src", 2)
    free = int_array(free_dst_mib, "free_dst_mib", 1)
    cpus = int_array(cpus_dst, "cpus_dst", 1)
    pdd = int_array(pdist_dst, "pdist_dst", 2)
    load = int_array(load_vcpus_dst, "load_vcpus_dst", 1)
    v = size.shape[0]
    ps, pd = pds.shape[0], pdd.shape[0]
    if v == 0 or ps == 0 or pd == 0:
        raise InputError("need at least one vnode and one pnode on each host")
    if (
        cw.shape != (v,)
        or vd.shape != (v, v)
        or xs.shape != (v, ps)
        or hs.shape != (v,)
        or pds.shape != (ps, ps)
        or free.shape != (pd,)
        or cpus.shape != (pd,)
        or pdd.shape != (pd, pd)
        or load.shape != (pd,)
    ):
        raise InputError(
            "inconsistent shapes: size/vcpus/home (V,), vdist (V,V), backing_src "
            "(V,Ps), pdist_src (Ps,Ps), free/cpus/load_dst (Pd,), pdist_dst (Pd,Pd)"
        )
    if strategy not in ("rebalance", "replug"):
        raise InputError(f"unknown strategy {strategy!r}")
    if policy not in POLICIES:
        raise InputError(f"unknown policy {policy!r}; expected one of {POLICIES}")
    block = int(block_mib)
    if block <= 0 or (size % block).any() or (size <= 0).any():
        raise InputError("block_mib must be positive and divide every positive size_mib")
    if (xs < 0).any() or (cw < 0).any() or ((hs < 0) | (hs >= ps)).any():
        raise InputError("backing and vcpus must be non-negative, home_src must index a pnode")
    t_before = xs.sum(axis=1)
    if (t_before > size).any():
        raise InputError("a source pool is above its vnode size")
    dmin, dmax = int(dynamic_min_mib), int(dynamic_max_mib)
    if not 0 <= dmin <= dmax:
        raise InputError("need 0 <= dynamic_min_mib <= dynamic_max_mib")
    target_before = int(t_before.sum())
    d_before = distortion(xs, vd, pds, hs, cw)
    r_before = remote_fraction(xs, hs)

    def fail(reason: str) -> MigrationPlan:
        return _infeasible(reason, strategy, xs, hs, pd, target_before, d_before, r_before, block)

    if not dmin <= target_before <= dmax:
        return fail(
            f"source target {target_before} MiB is outside dynamic range [{dmin}, {dmax}] MiB"
        )
    free_pos = np.maximum(free, 0)
    can_back = min(int(size.sum()), int(free_pos.sum()))
    target_after = min(target_before, can_back)
    if target_after < dmin:
        return fail(f"destination can back at most {can_back} MiB, below dynamic_min {dmin}")
    if policy == "explicit" and target_after < target_before:
        return fail(f"explicit policy cannot shrink from {target_before} to {target_after} MiB")

    # Destination mapping and pool levels.
    demand = apportion(np.array([target_after]), t_before[None] if target_before else size[None])
    placement = place(
        demand_mib=demand[0],
        vcpus=cw,
        vdist=vd,
        free_mib=free_pos,
        cpus=cpus,
        pdist=pdd,
        load_vcpus=load,
    )
    home_dst = placement.mapping.astype(np.int64)
    try:
        xa = distribute(
            target_after,
            size,
            free_pos,
            home_dst,
            vd,
            pdd,
            cast(Policy, policy),
            explicit_targets_mib=t_before if policy == "explicit" else None,
            block_mib=block,
            vcpu_weight=cw,
        )
    except InfeasibleError as e:  # cannot happen with target_after <= can_back; be explicit
        return fail(e.reason)
    t_after = xa.sum(axis=1)

    # Carried levels (see module docstring).
    floor = max(dmin, int(np.minimum(t_before, t_after).sum()))
    if strategy == "rebalance":
        carried_total = floor
    else:
        boot = dmin if boot_mib is None else max(int(boot_mib), dmin)
        carried_total = min(boot, target_before, target_after)
    t_mid = _carry(t_before, t_after, carried_total)
    x_mid_src = _keep_nearest(xs, t_mid, hs, pds)

    # Destination backing at migrate: a sub-backing of the final one plus any surplus.
    sub = np.minimum(t_mid, t_after)
    x_sub = _keep_nearest(xa, sub, home_dst, pdd)
    surplus = t_mid - sub
    grow_need = xa - x_sub
    spare = np.maximum(free_pos - xa.sum(axis=0), 0)
    gd = grow_need.sum(axis=0)
    alloc = _interval_alloc(surplus, np.concatenate([spare, gd]))
    sp_spare, sp_slot = alloc[:, :pd], alloc[:, pd:]
    slot_total = int(sp_slot.sum())
    if slot_total > target_after - dmin:
        return fail(
            f"destination lacks {slot_total - (target_after - dmin)} MiB of room to "
            f"re-pool without going below dynamic_min {dmin} MiB"
        )
    x_carried = x_sub + sp_spare + sp_slot
    claims = xa.sum(axis=0) + sp_spare.sum(axis=0)

    # Settle sub-phases: (A) grow into free claimed room, (B) shrink surplus, (C) grow the rest.
    room = gd - sp_slot.sum(axis=0)
    before = np.cumsum(grow_need, axis=0) - grow_need
    grow_a = np.clip(room[None, :] - before, 0, grow_need)
    grow_c = grow_need - grow_a

    topo = VirtualTopology(
        size_mib=size, vcpu_vnode=np.repeat(np.arange(v), cw), distances=vd, block_mib=block
    )
    steps: list[PlanStep] = []

    def emit(phase: Phase, host: Host, c: _Chunks) -> None:
        vv, pp, ss, ee, isblk = _split_blocks(c, block)
        nb_s = -(-ss // block)
        nb_e = -(-ee // block)
        for i in range(vv.shape[0]):  # one iteration per emitted step
            s, e, vn = int(ss[i]), int(ee[i]), int(vv[i])
            lo, hi = sorted((int(nb_s[i]), int(nb_e[i])))
            op: Op = ("plug" if e > s else "unplug") if isblk[i] else "balloon"
            ranges = tuple(topo.block_pfn_ranges(vn, lo, hi - lo)) if isblk[i] else ()
            steps.append(
                PlanStep(len(steps), phase, op, host, vn, int(pp[i]), abs(e - s), ranges, e)
            )

    for p in np.flatnonzero(claims > 0).tolist():
        steps.append(
            PlanStep(
                len(steps), "claim", "claim", "destination", None, int(p), int(claims[p]), (), None
            )
        )
    emit("prepare", "source", _chunks(x_mid_src - xs, t_before))
    steps.append(
        PlanStep(
            len(steps),
            "migrate",
            "migrate",
            "source",
            None,
            None,
            int(t_mid.sum()),
            (),
            int(t_mid.sum()),
        )
    )
    level = t_mid
    for delta in (grow_a, -(sp_spare + sp_slot), grow_c):
        emit("settle", "destination", _chunks(delta, level))
        level = level + delta.sum(axis=1)
    left_src = x_mid_src.sum(axis=0)
    for p in np.flatnonzero(xs.sum(axis=0) > 0).tolist():
        steps.append(
            PlanStep(
                len(steps), "release", "release", "source", None, int(p), int(left_src[p]), (), None
            )
        )

    moved = sum(s.mib for s in steps if s.op in ("balloon", "plug", "unplug"))
    return MigrationPlan(
        feasible=True,
        reason="",
        strategy=strategy,
        mapping_before=hs,
        mapping_after=home_dst,
        backing_before=xs,
        backing_after=xa,
        claims_mib=claims,
        target_before_mib=target_before,
        target_after_mib=target_after,
        steps=tuple(steps),
        moved_mib=int(moved),
        distortion_before=d_before,
        distortion_after=distortion(xa, vd, pdd, home_dst, cw),
        remote_fraction_before=r_before,
        remote_fraction_after=remote_fraction(xa, home_dst),
        carried_mib=t_mid,
        backing_carried_mib=x_carried,
        block_mib=block,
    )
