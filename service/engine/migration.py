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
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .distribute import POLICIES, Policy, apportion, distribute
from .errors import InfeasibleError, InputError
from .inputs import int_array
from .metrics import distortion, remote_fraction
from .placement import place
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


@dataclass(frozen=True, kw_only=True)
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


@dataclass(frozen=True, eq=False, kw_only=True)
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


@dataclass(frozen=True, kw_only=True)
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
    return _Chunks(
        vnode=v.astype(np.int64),
        pnode=p.astype(np.int64),
        start=before[v, p],
        end=before[v, p] + delta[v, p],
    )


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


@dataclass(frozen=True, kw_only=True)
class _Request:
    """``plan_migration``'s arguments, coerced and checked: what every stage reads.

    ``size``, ``vcpu_count``, ``home_src``: (V,); ``vdist``: (V, V); ``backing_src``: (V, Ps);
    ``free``, ``cpus``, ``load``: destination (Pd,), ``free`` clipped at 0; ``t_before``: the
    source pool levels (V,)."""

    size: I64
    vcpu_count: I64
    vdist: I64
    backing_src: I64
    home_src: I64
    pdist_src: I64
    free: I64
    cpus: I64
    pdist_dst: I64
    load: I64
    block: int
    dmin: int
    dmax: int
    policy: str
    strategy: Strategy
    boot_mib: int | None
    t_before: I64

    @property
    def target_before(self) -> int:
        return int(self.t_before.sum())


def _check_shapes(
    size: I64,
    cw: I64,
    vd: I64,
    xs: I64,
    hs: I64,
    pds: I64,
    dst: tuple[I64, I64, I64, I64],
) -> None:
    """InputError unless the arrays agree on V, Ps and Pd.

    ``cw``: vCPU count per vnode; ``xs``/``hs``/``pds``: source backing, homes and SLIT;
    ``dst``: the destination's free MiB, CPUs, SLIT and vCPU load."""
    free, cpus, pdd, load = dst
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


def _check_values(
    *, size: I64, cw: I64, xs: I64, hs: I64, block: int, policy: str, strategy: str
) -> None:
    """InputError for an unknown policy or strategy, a bad block size or negative inputs."""
    ps = xs.shape[1]
    if strategy not in ("rebalance", "replug"):
        raise InputError(f"unknown strategy {strategy!r}")
    if policy not in POLICIES:
        raise InputError(f"unknown policy {policy!r}; expected one of {POLICIES}")
    if block <= 0 or (size % block).any() or (size <= 0).any():
        raise InputError("block_mib must be positive and divide every positive size_mib")
    if (xs < 0).any() or (cw < 0).any() or ((hs < 0) | (hs >= ps)).any():
        raise InputError("backing and vcpus must be non-negative, home_src must index a pnode")


def _target_after(r: _Request) -> int | str:
    """The domain total on the destination, or the reason there is none."""
    target_before, dmin, dmax = r.target_before, r.dmin, r.dmax
    if not dmin <= target_before <= dmax:
        return f"source target {target_before} MiB is outside dynamic range [{dmin}, {dmax}] MiB"
    can_back = min(int(r.size.sum()), int(r.free.sum()))
    target_after = min(target_before, can_back)
    if target_after < dmin:
        return f"destination can back at most {can_back} MiB, below dynamic_min {dmin}"
    if r.policy == "explicit" and target_after < target_before:
        return f"explicit policy cannot shrink from {target_before} to {target_after} MiB"
    return target_after


def _destination(r: _Request, target_after: int) -> tuple[I64, I64]:
    """Destination homes (``place`` with the source levels as demand) and final backing
    (``distribute`` with the domain's policy); raises ``InfeasibleError`` from distribute."""
    weights = r.t_before[None] if r.target_before else r.size[None]
    demand = apportion(total_mib=np.array([target_after]), weights=weights)
    placement = place(
        demand_mib=demand[0],
        vcpu_count=r.vcpu_count,
        vdist=r.vdist,
        free_mib=r.free,
        cpus=r.cpus,
        pdist=r.pdist_dst,
        load_vcpus=r.load,
    )
    home_dst = placement.mapping.astype(np.int64)
    backing_after = distribute(
        target_mib=target_after,
        size_mib=r.size,
        headroom_mib=r.free,
        home=home_dst,
        vdist=r.vdist,
        pdist=r.pdist_dst,
        policy=Policy(r.policy),
        explicit_targets_mib=r.t_before if r.policy == "explicit" else None,
        block_mib=r.block,
        vcpu_count=r.vcpu_count,
    )
    return home_dst, backing_after


def _carried_total(r: _Request, t_after: I64, target_after: int) -> int:
    """MiB the migrate step carries: see "Carried levels" in the module docstring."""
    floor = max(r.dmin, int(np.minimum(r.t_before, t_after).sum()))
    if r.strategy == "rebalance":
        return floor
    boot = r.dmin if r.boot_mib is None else max(int(r.boot_mib), r.dmin)
    return min(boot, r.target_before, target_after)


@dataclass(frozen=True, kw_only=True)
class _Landing:
    """Where the carried memory lands on the destination and what settle then changes.

    All (V, Pd) but ``claims`` (Pd,): ``surplus_spare``/``surplus_slot`` are carried MiB above
    a pool's destination level, backed in spare memory or in growth slots; ``grow_a`` and
    ``grow_c`` the growth of settle's sub-phases (A) and (C)."""

    carried: I64
    claims: I64
    surplus_spare: I64
    surplus_slot: I64
    grow_a: I64
    grow_c: I64


def _landing(r: _Request, t_mid: I64, backing_after: I64, home_dst: I64) -> _Landing:
    """Destination backing at migrate: a sub-backing of the final one plus any surplus."""
    pd = r.pdist_dst.shape[0]
    t_after = backing_after.sum(axis=1)
    sub = np.minimum(t_mid, t_after)
    x_sub = _keep_nearest(backing_after, sub, home_dst, r.pdist_dst)
    surplus = t_mid - sub
    grow_need = backing_after - x_sub
    spare = np.maximum(r.free - backing_after.sum(axis=0), 0)
    gd = grow_need.sum(axis=0)
    alloc = _interval_alloc(surplus, np.concatenate([spare, gd]))
    sp_spare, sp_slot = alloc[:, :pd], alloc[:, pd:]
    # Settle sub-phases: (A) grow into free claimed room, (B) shrink surplus, (C) grow the rest.
    room = gd - sp_slot.sum(axis=0)
    before = np.cumsum(grow_need, axis=0) - grow_need
    grow_a = np.clip(room[None, :] - before, 0, grow_need)
    return _Landing(
        carried=x_sub + sp_spare + sp_slot,
        claims=backing_after.sum(axis=0) + sp_spare.sum(axis=0),
        surplus_spare=sp_spare,
        surplus_slot=sp_slot,
        grow_a=grow_a,
        grow_c=grow_need - grow_a,
    )


class _Steps:
    """The plan's steps in emission order, numbered as they are added."""

    def __init__(self, topo: VirtualTopology) -> None:
        self.topo = topo
        self.steps: list[PlanStep] = []

    def add(
        self,
        *,
        phase: Phase,
        op: Op,
        host: Host,
        vnode: int | None,
        pnode: int | None,
        mib: int,
        pfn_ranges: tuple[tuple[int, int], ...] = (),
        target_mib: int | None = None,
    ) -> None:
        """One step with the next ``seq``."""
        step = PlanStep(
            seq=len(self.steps),
            phase=phase,
            op=op,
            host=host,
            vnode=vnode,
            pnode=pnode,
            mib=mib,
            pfn_ranges=pfn_ranges,
            target_mib=target_mib,
        )
        self.steps.append(step)

    def pools(self, phase: Phase, host: Host, c: _Chunks) -> None:
        """Balloon / plug / unplug steps of the pool changes ``c``, split at block bounds."""
        block = self.topo.block_mib
        vv, pp, ss, ee, isblk = _split_blocks(c, block)
        nb_s = -(-ss // block)
        nb_e = -(-ee // block)
        for i in range(vv.shape[0]):  # one iteration per emitted step
            s, e, vn = int(ss[i]), int(ee[i]), int(vv[i])
            lo, hi = sorted((int(nb_s[i]), int(nb_e[i])))
            op: Op = ("plug" if e > s else "unplug") if isblk[i] else "balloon"
            ranges = tuple(self.topo.block_pfn_ranges(vn, lo, hi - lo)) if isblk[i] else ()
            self.add(
                phase=phase,
                op=op,
                host=host,
                vnode=vn,
                pnode=int(pp[i]),
                mib=abs(e - s),
                pfn_ranges=ranges,
                target_mib=e,
            )

    def per_pnode(self, op: Literal["claim", "release"], host: Host, mib: I64, on: I64) -> None:
        """One ``op`` step per pnode where ``on`` is positive, of ``mib[p]`` MiB."""
        for p in np.flatnonzero(on > 0).tolist():
            self.add(
                phase=op,
                op=op,
                host=host,
                vnode=None,
                pnode=int(p),
                mib=int(mib[p]),
                pfn_ranges=(),
                target_mib=None,
            )


def _plan_steps(r: _Request, t_mid: I64, x_mid_src: I64, land: _Landing) -> tuple[PlanStep, ...]:
    """Claim, prepare, migrate, settle (A, B, C) and release, in that order."""
    v = r.size.shape[0]
    topo = VirtualTopology(
        size_mib=r.size,
        vcpu_vnode=np.repeat(np.arange(v), r.vcpu_count),
        distances=r.vdist,
        block_mib=r.block,
    )
    out = _Steps(topo)
    out.per_pnode("claim", "destination", land.claims, land.claims)
    out.pools("prepare", "source", _chunks(x_mid_src - r.backing_src, r.t_before))
    carried = int(t_mid.sum())
    out.add(
        phase="migrate",
        op="migrate",
        host="source",
        vnode=None,
        pnode=None,
        mib=carried,
        pfn_ranges=(),
        target_mib=carried,
    )
    level = t_mid
    for delta in (land.grow_a, -(land.surplus_spare + land.surplus_slot), land.grow_c):
        out.pools("settle", "destination", _chunks(delta, level))
        level = level + delta.sum(axis=1)
    out.per_pnode("release", "source", x_mid_src.sum(axis=0), r.backing_src.sum(axis=0))
    return tuple(out.steps)


def _infeasible(r: _Request, reason: str) -> MigrationPlan:
    """A plan that says why the destination cannot take the domain: no steps, empty after."""
    v, pd = r.size.shape[0], r.pdist_dst.shape[0]
    empty = np.zeros((v, pd), dtype=np.int64)
    return MigrationPlan(
        feasible=False,
        reason=reason,
        strategy=r.strategy,
        mapping_before=r.home_src,
        mapping_after=np.zeros(v, dtype=np.int64),
        backing_before=r.backing_src,
        backing_after=empty,
        claims_mib=np.zeros(pd, dtype=np.int64),
        target_before_mib=r.target_before,
        target_after_mib=0,
        steps=(),
        moved_mib=0,
        distortion_before=_distortion_before(r),
        distortion_after=0.0,
        remote_fraction_before=remote_fraction(backing_mib=r.backing_src, home=r.home_src),
        remote_fraction_after=0.0,
        carried_mib=np.zeros(v, dtype=np.int64),
        backing_carried_mib=empty,
        block_mib=r.block,
    )


def _distortion_before(r: _Request) -> float:
    return distortion(
        backing_mib=r.backing_src,
        vdist=r.vdist,
        pdist=r.pdist_src,
        home=r.home_src,
        vcpu_count=r.vcpu_count,
    )


def plan_migration(
    *,
    size_mib: ArrayLike,
    vcpu_count: ArrayLike,
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
    cw = int_array(vcpu_count, "vcpu_count", 1)
    vd = int_array(vdist, "vdist", 2)
    xs = int_array(backing_src, "backing_src", 2)
    hs = int_array(home_src, "home_src", 1)
    pds = int_array(pdist_src, "pdist_src", 2)
    free = int_array(free_dst_mib, "free_dst_mib", 1)
    cpus = int_array(cpus_dst, "cpus_dst", 1)
    pdd = int_array(pdist_dst, "pdist_dst", 2)
    load = int_array(load_vcpus_dst, "load_vcpus_dst", 1)
    _check_shapes(size, cw, vd, xs, hs, pds, (free, cpus, pdd, load))
    block = int(block_mib)
    _check_values(size=size, cw=cw, xs=xs, hs=hs, block=block, policy=policy, strategy=strategy)
    t_before = xs.sum(axis=1)
    if (t_before > size).any():
        raise InputError("a source pool is above its vnode size")
    dmin, dmax = int(dynamic_min_mib), int(dynamic_max_mib)
    if not 0 <= dmin <= dmax:
        raise InputError("need 0 <= dynamic_min_mib <= dynamic_max_mib")
    request = _Request(
        size=size,
        vcpu_count=cw,
        vdist=vd,
        backing_src=xs,
        home_src=hs,
        pdist_src=pds,
        free=np.maximum(free, 0),
        cpus=cpus,
        pdist_dst=pdd,
        load=load,
        block=block,
        dmin=dmin,
        dmax=dmax,
        policy=policy,
        strategy=strategy,
        boot_mib=boot_mib,
        t_before=t_before,
    )
    return _plan(request)


def _plan(r: _Request) -> MigrationPlan:
    """Destination, carried levels, landing and steps of a checked request."""
    target_after = _target_after(r)
    if isinstance(target_after, str):
        return _infeasible(r, target_after)
    try:
        home_dst, backing_after = _destination(r, target_after)
    except InfeasibleError as e:  # cannot happen with target_after <= can_back; be explicit
        return _infeasible(r, e.reason)
    t_after = backing_after.sum(axis=1)
    t_mid = _carry(r.t_before, t_after, _carried_total(r, t_after, target_after))
    x_mid_src = _keep_nearest(r.backing_src, t_mid, r.home_src, r.pdist_src)
    land = _landing(r, t_mid, backing_after, home_dst)
    slot_total = int(land.surplus_slot.sum())
    if slot_total > target_after - r.dmin:
        return _infeasible(
            r,
            f"destination lacks {slot_total - (target_after - r.dmin)} MiB of room to "
            f"re-pool without going below dynamic_min {r.dmin} MiB",
        )
    steps = _plan_steps(r, t_mid, x_mid_src, land)
    moved = sum(s.mib for s in steps if s.op in ("balloon", "plug", "unplug"))
    return MigrationPlan(
        feasible=True,
        reason="",
        strategy=r.strategy,
        mapping_before=r.home_src,
        mapping_after=home_dst,
        backing_before=r.backing_src,
        backing_after=backing_after,
        claims_mib=land.claims,
        target_before_mib=r.target_before,
        target_after_mib=target_after,
        steps=steps,
        moved_mib=int(moved),
        distortion_before=_distortion_before(r),
        distortion_after=distortion(
            backing_mib=backing_after,
            vdist=r.vdist,
            pdist=r.pdist_dst,
            home=home_dst,
            vcpu_count=r.vcpu_count,
        ),
        remote_fraction_before=remote_fraction(backing_mib=r.backing_src, home=r.home_src),
        remote_fraction_after=remote_fraction(backing_mib=backing_after, home=home_dst),
        carried_mib=t_mid,
        backing_carried_mib=land.carried,
        block_mib=r.block,
    )
