"""Per-vnode pool targets and their backing on pnodes (``X[v, p]``) for one or many domains.

Two stages, shared by every policy except ``faithful``:

1. *targets*: the policy turns the domain target into per-vnode targets ``t[v] <= size[v]``;
2. *assignment*: ``t`` is backed on pnodes within ``headroom``.  Existing backing
   (``current_mib``) is kept where it still fits, trimmed farthest-from-home first, so a policy
   change moves as little memory as possible; new memory goes to the vnode's home pnode and
   spills to the pnodes nearest to it (by physical distance) only when the home is full.

Spilling is done in "rounds": in round k every vnode that still needs memory asks its k-th
nearest pnode, vnodes in index order.  That greedy fills every pnode before giving up, so it
backs any target up to ``sum(headroom)``, which is the exact maximum because every vnode may
use every pnode (a complete bipartite transport problem).  Rounds stop as soon as nothing is
left, usually after round 0 (the home pnode).

``faithful`` solves the seed thread's worst-case-topology matching as a transportation LP.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linprog

from .errors import EngineError, InfeasibleError, InputError
from .inputs import int_array
from .metrics import cost_matrix

__all__ = [
    "POLICIES",
    "Policy",
    "apportion",
    "assign_many",
    "distribute",
    "distribute_many",
    "max_feasible_target_mib",
    "vnode_targets_many",
]


class Policy(StrEnum):
    """How a domain's target is spread over its vnodes: proportional to their sizes (default),
    round-robin in block steps, nearest pools first, faithful (virtual distance follows physical
    distance), or explicit per-vnode targets."""

    PROPORTIONAL = "proportional"
    ROUND_ROBIN = "round-robin"
    NEAREST = "nearest"
    FAITHFUL = "faithful"
    EXPLICIT = "explicit"


POLICIES: tuple[str, ...] = tuple(Policy)

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
_INT64 = np.dtype(np.int64)


def _ints(a: object, name: str, ndim: int) -> I64:
    """`int_array`, without its checks for what already is a plain int64 array of ``ndim``
    dimensions (its result then is ``a`` itself): `distribute` coerces its arguments and hands
    them to `distribute_many`, which coerces them again, and the checks cost more than the
    arithmetic of a small domain."""
    if type(a) is np.ndarray and a.dtype == _INT64 and a.ndim == ndim:
        return a
    return int_array(a, name, ndim)


def apportion(*, total_mib: I64, weights: I64) -> I64:
    """Split ``total[n]`` over ``weights[n, :]`` exactly by largest remainder (Hamilton).

    Each share is the floor or ceiling of ``total * w / sum(w)``, so a share never exceeds its
    weight when ``total <= sum(w)``; ties go to the lower index so results are reproducible.
    Integer arithmetic throughout (products stay below 2**62 for MiB quantities below 2**31).
    """
    w = weights
    s = w.sum(axis=1)
    safe = np.where(s > 0, s, 1)
    prod = total_mib[:, None] * w
    q = prod // safe[:, None]
    rem = prod - q * safe[:, None]
    left = total_mib - q.sum(axis=1)
    order = np.argsort(-rem, axis=1, kind="stable")
    rank = np.argsort(order, axis=1)  # each row of `order` is a permutation: its inverse
    out: I64 = q + (rank < left[:, None])
    return out


def _round_robin(amount: I64, cap: I64, block: I64) -> I64:
    """Hand out ``amount`` one block per pool per round, pools in index order, within ``cap``.

    This is the balloon driver of the thread going "round-robin across the NUMA pools" in hotplug
    block steps.  Full rounds are found by bisection on the round count (vectorised over domains);
    the last, partial round goes to the lowest-indexed pools.
    """
    b = block[:, None]
    kmax = (-(-cap // b)).max(axis=1, initial=0) if cap.shape[1] else np.zeros_like(amount)
    lo = np.zeros_like(amount)
    hi = kmax + 1
    while True:
        open_ = hi - lo > 1
        if not open_.any():
            break
        mid = (lo + hi) // 2
        ok = np.minimum(cap, mid[:, None] * b).sum(axis=1) <= amount
        lo = np.where(open_ & ok, mid, lo)
        hi = np.where(open_ & ~ok, mid, hi)
    base = np.minimum(cap, lo[:, None] * b)
    rest = amount - base.sum(axis=1)
    take = np.clip(cap - base, 0, b)
    before = np.cumsum(take, axis=1) - take
    out: I64 = base + np.clip(rest[:, None] - before, 0, take)
    return out


def _fill_in_order(amount: I64, cap: I64, order: NDArray[np.intp]) -> I64:
    """Fill pools to their cap one after another in ``order`` until ``amount`` is used up."""
    cap_o = np.take_along_axis(cap, order, axis=1)
    before = np.cumsum(cap_o, axis=1) - cap_o
    got_o = np.clip(amount[:, None] - before, 0, cap_o)
    out = np.zeros_like(cap)
    np.put_along_axis(out, order, got_o, axis=1)
    return out


def vnode_targets_many(
    *,
    target_mib: I64,
    size_mib: I64,
    policy: Policy,
    current_t_mib: I64,
    vdist: I64,
    block_mib: I64,
    vcpu_count: I64,
) -> I64:
    """(N, V) per-vnode targets for proportional / round-robin / nearest; inputs pre-validated."""
    if policy == "proportional":
        return apportion(total_mib=target_mib, weights=size_mib)
    cur = np.clip(current_t_mib, 0, size_mib)
    delta = target_mib - cur.sum(axis=1)
    grow = delta >= 0
    amount = np.abs(delta)
    cap = np.where(grow[:, None], size_mib - cur, cur)
    if policy == "round-robin":
        change = _round_robin(amount, cap, block_mib)
    elif policy == "nearest":
        home_vnode = np.argmax(vcpu_count, axis=1)
        key = np.take_along_axis(vdist, home_vnode[:, None, None], axis=1)[:, 0, :]
        order = np.argsort(key, axis=1, kind="stable")
        order = np.where(grow[:, None], order, order[:, ::-1])
        change = _fill_in_order(amount, cap, order)
    else:
        raise InputError(f"policy {policy!r} has no batched vnode-target rule")
    out: I64 = np.where(grow[:, None], cur + change, cur - change)
    return out


def _clip(a: I64, low: int, high: I64) -> I64:
    """`np.clip` for integer arrays (its definition: the minimum of the maximum), without the
    Python-level dispatch that costs more than the arithmetic on a small domain's arrays."""
    out: I64 = np.minimum(np.maximum(a, low), high)
    return out


def assign_many(
    *,
    t_mib: I64,
    headroom_mib: I64,
    home: I64,
    pdist: I64,
    current_mib: I64 | None = None,
) -> I64:
    """(N, V, P) backing of per-vnode targets ``t`` within per-domain ``headroom`` rows.

    Raises ``EngineError`` if some ``t`` could not be placed, which cannot happen when
    ``t.sum(1) <= max(headroom, 0).sum(1)`` (checked by callers with a proper message).
    """
    n, v = t_mib.shape
    p = pdist.shape[0]
    order = np.argsort(pdist, axis=1, kind="stable")  # home first: diagonal 10 < 11
    ordv = order[home]  # (N, V, P) pnodes by distance from each vnode's home
    hcap = np.maximum(headroom_mib, 0)
    x = np.zeros((n, v, p), dtype=np.int64)
    # Index arrays for (domain, vnode) cells: fancy indexing with them is `take_along_axis` /
    # `put_along_axis` on the last axis without those helpers' per-call overhead.
    cell_n, cell_v = np.arange(n)[:, None, None], np.arange(v)[None, :, None]
    if current_mib is not None:
        cur = np.maximum(current_mib, 0)
        cur_o = cur[cell_n, cell_v, ordv]
        before = np.cumsum(cur_o, axis=2) - cur_o
        keep_o = _clip(t_mib[:, :, None] - before, 0, cur_o)  # drop farthest first
        x[cell_n, cell_v, ordv] = keep_o  # each row of `ordv` is a permutation of the pnodes
        excess = np.maximum(x.sum(axis=1) - hcap, 0)  # headroom shrank under us
        if excess.any():  # (without excess the trim below is zero everywhere)
            rev = x[:, ::-1, :]
            rb = np.cumsum(rev, axis=1) - rev
            x -= _clip(excess[:, None, :] - rb, 0, rev)[:, ::-1, :]
    r = t_mib - x.sum(axis=2)
    hrem = hcap - x.sum(axis=1)
    for k in range(p):
        need = r.any(axis=1)
        if not need.any():
            break
        idx = np.flatnonzero(need)
        q = ordv[idx, :, k]
        dem = np.zeros((idx.size, v, p), dtype=np.int64)
        dem[cell_n[: idx.size, :, 0], cell_v[:, :, 0], q] = r[idx]
        before = np.cumsum(dem, axis=1) - dem
        grant = _clip(hrem[idx][:, None, :] - before, 0, dem)
        x[idx] += grant
        r[idx] -= grant.sum(axis=2)
        hrem[idx] -= grant.sum(axis=1)
    if r.any():
        raise EngineError("internal: assignment left memory unplaced")
    return x


def max_feasible_target_mib(*, size_mib: I64, headroom_mib: I64) -> I64:
    """(N,) exact maximum backable target: min(sum size, sum headroom).

    Max-flow of the complete bipartite network source -> vnode (cap size) -> pnode -> sink
    (cap headroom); with every vnode allowed on every pnode its min cut is one of the two sides.
    """
    out: I64 = np.minimum(size_mib.sum(axis=1), np.maximum(headroom_mib, 0).sum(axis=1))
    return out


def _faithful_one(
    target: int,
    size: I64,
    hcap: I64,
    home: I64,
    vdist: I64,
    pdist: I64,
    vcpu_count: I64,
) -> I64:
    """Transportation LP: minimise belief error, tie-break towards physically near memory.

    The tie-break weight is small enough that it can never trade away a whole unit of belief
    error: any improving cycle of the transport network has at most 2(V+P+2) arcs.
    """
    v, p = size.shape[0], hcap.shape[0]
    if target == 0:
        return np.zeros((v, p), dtype=np.int64)
    cw = vcpu_count
    c = cost_matrix(vdist=vdist, pdist=pdist, home=home, vcpu_count=cw)
    wsum = float(cw.sum())
    near = (cw.astype(np.float64) @ pdist[home].astype(np.float64)) / (wsum if wsum else 1.0)
    if wsum == 0:
        near = pdist[home].astype(np.float64).mean(axis=0)
    delta = 1.0 / (4.0 * 254.0 * (v + p + 2))
    cost = (c + delta * near[None, :]).ravel()
    a_ub = np.zeros((v + p, v * p))
    for_rows = np.repeat(np.arange(v), p)
    for_cols = np.tile(np.arange(p), v)
    a_ub[for_rows, np.arange(v * p)] = 1.0
    a_ub[v + for_cols, np.arange(v * p)] = 1.0
    b_ub = np.concatenate([size, hcap]).astype(np.float64)
    res = linprog(
        cost,
        A_ub=a_ub,
        b_ub=b_ub,
        A_eq=np.ones((1, v * p)),
        b_eq=[float(target)],
        bounds=(0, None),
        method="highs",
    )
    if res.status != 0 or res.x is None:
        raise EngineError(f"internal: faithful LP failed: {res.message}")
    x = np.maximum(np.rint(np.asarray(res.x)), 0).astype(np.int64).reshape(v, p)
    return _repair(x, target, size, hcap, c + delta * near[None, :])


def _repair(x: I64, target: int, size: I64, hcap: I64, cost: F64) -> I64:
    """Make a rounded LP solution satisfy the invariants exactly (rarely does anything)."""
    x = x.copy()
    # Trim rows then columns back under their caps, from the most expensive entries.
    for axis, cap in ((1, size), (0, hcap)):
        over = x.sum(axis=axis) - cap
        while (over > 0).any():
            i = int(np.argmax(over))
            line = x[i] if axis == 1 else x[:, i]
            costs = cost[i] if axis == 1 else cost[:, i]
            j = int(np.argmax(np.where(line > 0, costs, -np.inf)))
            d = min(int(over[i]), int(line[j]))
            if axis == 1:
                x[i, j] -= d
            else:
                x[j, i] -= d
            over = x.sum(axis=axis) - cap
    gap = target - int(x.sum())
    while gap != 0:
        if gap > 0:
            room = np.minimum((size - x.sum(1))[:, None], (hcap - x.sum(0))[None, :])
            masked = np.where(room > 0, cost, np.inf)
            u, q = np.unravel_index(int(np.argmin(masked)), cost.shape)
            if not np.isfinite(masked[u, q]):
                raise EngineError("internal: faithful repair found no room")
            d = min(gap, int(room[u, q]))
            x[u, q] += d
        else:
            masked = np.where(x > 0, cost, -np.inf)
            u, q = np.unravel_index(int(np.argmax(masked)), cost.shape)
            d = min(-gap, int(x[u, q]))
            x[u, q] -= d
        gap = target - int(x.sum())
    return x


@dataclass(frozen=True, kw_only=True)
class _Batch:
    """``distribute_many``'s arguments, coerced and checked: targets (N,), sizes (N, V),
    headroom (N, P), homes (N, V), vdist (N, V, V), pdist (P, P), blocks (N,), vCPU counts
    (N, V) and the current backing (N, V, P) or None."""

    target: I64
    size: I64
    headroom: I64
    home: I64
    vdist: I64
    pdist: I64
    block: I64
    vcpu_count: I64
    current: I64 | None


def _batch(
    *,
    target_mib: object,
    size_mib: object,
    headroom_mib: object,
    home: object,
    vdist: object,
    pdist: object,
    current_mib: object | None,
    block_mib: int | object,
    vcpu_count: object | None,
) -> _Batch:
    """Coerce and check ``distribute_many``'s arrays; InputError names the bad one."""
    t = _ints(target_mib, "target_mib", 1)
    size = _ints(size_mib, "size_mib", 2)
    head = _ints(headroom_mib, "headroom_mib", 2)
    hm = _ints(home, "home", 2)
    vd = _ints(vdist, "vdist", 3)
    pd = _ints(pdist, "pdist", 2)
    n, v = size.shape
    p = pd.shape[0]
    if t.shape != (n,) or head.shape != (n, p) or hm.shape != (n, v) or vd.shape != (n, v, v):
        raise InputError(
            "inconsistent shapes: need target (N,), size (N,V), headroom (N,P), "
            "home (N,V), vdist (N,V,V), pdist (P,P)"
        )
    if pd.shape != (p, p):
        raise InputError("pdist must be square")
    if (size < 0).any() or (t < 0).any():
        raise InputError("sizes and targets must be non-negative")
    if v and ((hm < 0) | (hm >= p)).any():
        raise InputError("home must index a pnode")
    blk_arr = np.asarray(block_mib)
    blk = np.broadcast_to(_ints(blk_arr, "block_mib", blk_arr.ndim), (n,)).astype(np.int64)
    if (blk <= 0).any():
        raise InputError("block_mib must be positive")
    # Without vCPU counts every non-empty vnode weighs the same.
    cw = (size > 0).astype(np.int64) if vcpu_count is None else _ints(vcpu_count, "vcpu_count", 2)
    if cw.shape != (n, v) or (cw < 0).any():
        raise InputError("vcpu_count must be (N,V) and non-negative")
    cur = None
    if current_mib is not None:
        cur = _ints(current_mib, "current_mib", 3)
        if cur.shape != (n, v, p) or (cur < 0).any():
            raise InputError("current_mib must be a non-negative (N,V,P) array")
    return _Batch(
        target=t,
        size=size,
        headroom=head,
        home=hm,
        vdist=vd,
        pdist=pd,
        block=blk,
        vcpu_count=cw,
        current=cur,
    )


def _check_feasible(b: _Batch) -> None:
    """InfeasibleError for the first domain whose target cannot be backed, listing all."""
    maxf = max_feasible_target_mib(size_mib=b.size, headroom_mib=b.headroom)
    bad = np.flatnonzero(b.target > maxf)
    if bad.size:
        i = int(bad[0])
        limit = "vnode sizes" if maxf[i] == b.size[i].sum() else "pnode headroom"
        raise InfeasibleError(
            int(maxf[i]),
            f"domain {i}: target {int(b.target[i])} MiB exceeds what {limit} can back",
            domains=tuple(int(d) for d in bad),
            per_domain_max_mib=tuple(int(m) for m in maxf),
        )


def _explicit_targets(b: _Batch, explicit_targets_mib: object | None) -> I64:
    """The caller's per-vnode targets, checked against sizes and the domain targets."""
    if explicit_targets_mib is None:
        raise InputError("explicit policy needs explicit_targets_mib")
    tv = _ints(explicit_targets_mib, "explicit_targets_mib", 2)
    if tv.shape != b.size.shape:
        raise InputError("explicit_targets_mib must be (N,V)")
    if (tv < 0).any() or (tv > b.size).any():
        raise InputError("explicit targets must be within 0..size_mib per vnode")
    if (tv.sum(axis=1) != b.target).any():
        raise InputError("explicit targets must sum to target_mib")
    return tv


def distribute_many(
    *,
    target_mib: object,
    size_mib: object,
    headroom_mib: object,
    home: object,
    vdist: object,
    pdist: object,
    policy: Policy = Policy.PROPORTIONAL,
    current_mib: object | None = None,
    explicit_targets_mib: object | None = None,
    block_mib: int | object = 128,
    vcpu_count: object | None = None,
) -> I64:
    """(N, V, P) backings for N domains of one host, each with its own headroom row.

    Padding: a domain with fewer vnodes pads ``size_mib`` with 0 (and ``vcpu_count`` with 0);
    padded vnodes get nothing.  ``block_mib`` is a scalar or one value per domain.
    ``faithful`` solves one LP per domain; the other policies are fully vectorised.
    Raises ``InfeasibleError`` for the first infeasible domain; its ``domains`` attribute lists
    all of them and ``per_domain_max_mib`` gives every domain's maximum.
    """
    if policy not in POLICIES:
        raise InputError(f"unknown policy {policy!r}; expected one of {POLICIES}")
    b = _batch(
        target_mib=target_mib,
        size_mib=size_mib,
        headroom_mib=headroom_mib,
        home=home,
        vdist=vdist,
        pdist=pdist,
        current_mib=current_mib,
        block_mib=block_mib,
        vcpu_count=vcpu_count,
    )
    _check_feasible(b)
    if policy == "faithful":
        out = np.zeros((*b.size.shape, b.pdist.shape[0]), dtype=np.int64)
        for i in range(b.size.shape[0]):  # one LP per domain, as allowed: they are independent
            out[i] = _faithful_one(
                int(b.target[i]),
                b.size[i],
                np.maximum(b.headroom[i], 0),
                b.home[i],
                b.vdist[i],
                b.pdist,
                b.vcpu_count[i],
            )
        return out
    if policy == "explicit":
        tv = _explicit_targets(b, explicit_targets_mib)
    else:
        cur_t = b.current.sum(axis=2) if b.current is not None else np.zeros_like(b.size)
        tv = vnode_targets_many(
            target_mib=b.target,
            size_mib=b.size,
            policy=policy,
            current_t_mib=cur_t,
            vdist=b.vdist,
            block_mib=b.block,
            vcpu_count=b.vcpu_count,
        )
    return assign_many(
        t_mib=tv, headroom_mib=b.headroom, home=b.home, pdist=b.pdist, current_mib=b.current
    )


def distribute(
    *,
    target_mib: int,
    size_mib: object,
    headroom_mib: object,
    home: object,
    vdist: object,
    pdist: object,
    policy: Policy = Policy.PROPORTIONAL,
    current_mib: object | None = None,
    explicit_targets_mib: object | None = None,
    block_mib: int = 128,
    vcpu_count: object | None = None,
) -> I64:
    """(V, P) backing ``X`` of one domain; see the module docstring for the two stages.

    ``headroom_mib[p]`` is what this domain may use on pnode p *including* what it holds now
    (capacity minus the other domains' usage); negative values count as 0.  ``current_mib`` lets
    round-robin / nearest move from the current pool levels and keeps existing backing in
    place; ``faithful`` ignores it (the LP re-plans from scratch).  Invariants: X >= 0,
    X.sum() == target, X.sum(1) <= size, X.sum(0) <= max(headroom, 0).
    """
    if isinstance(target_mib, bool) or not isinstance(target_mib, int | np.integer):
        raise InputError("target_mib must be an integer")
    size = _ints(size_mib, "size_mib", 1)
    vd = _ints(vdist, "vdist", 2)
    cur = None if current_mib is None else _ints(current_mib, "current_mib", 2)[None]
    exp = (
        None
        if explicit_targets_mib is None
        else _ints(explicit_targets_mib, "explicit_targets_mib", 1)[None]
    )
    cw = None if vcpu_count is None else _ints(vcpu_count, "vcpu_count", 1)[None]
    out = distribute_many(
        target_mib=np.array([int(target_mib)], dtype=np.int64),
        size_mib=size[None],
        headroom_mib=_ints(headroom_mib, "headroom_mib", 1)[None],
        home=_ints(home, "home", 1)[None],
        vdist=vd[None],
        pdist=pdist,
        policy=policy,
        current_mib=cur,
        explicit_targets_mib=exp,
        block_mib=block_mib,
        vcpu_count=cw,
    )
    res: I64 = out[0]
    return res
