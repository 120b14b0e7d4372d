"""XAPI squeezed's proportional policy, extended to NUMA: one call per host.

Every active domain gets ``target = dyn_min + gamma * (dyn_max - dyn_min)`` with ONE ``gamma``
for the whole host -- the largest in [0, 1] that keeps every pnode within
``capacity - claimed - requested_free`` (and, for a total request, the host-wide free total).
Sharing one gamma is what makes the policy fair: nobody is squeezed harder than anybody else
relative to its own dynamic range.

A request to free memory (``free_mib``, ``total_free_mib``) only lowers targets: a domain's
target is ``min(dyn_min + gamma * (dyn_max - dyn_min), current)``, so the domains above the
shared line come down to it and those below keep what they have. Without that cap a host with
memory to spare would hand it out while asked to free some (every domain raised toward
dyn_max, the free memory left just above the request): that is ``balance``, asked for by name.

Where a domain's memory sits as its target moves (integer MiB, exact at three anchors):

* ``P_mid``: the current backing moved to ``clamp(current, dyn_min, dyn_max)``;
* ``P_0``: ``P_mid`` shrunk to ``dyn_min`` -- every (vnode, pnode) entry scaled down alike;
* ``P_1``: ``P_mid`` grown to ``dyn_max`` -- vnodes grow in proportion to their free room
  (so no vnode outgrows its span) and inside a vnode the pnodes keep their current shares; an
  empty vnode grows on its home pnode. For a request to free memory ``P_1`` is ``P_mid``.

Between anchors each entry moves linearly with gamma (breakpoint ``gamma_d`` where the domain
is back at its current size), so each pnode's usage is piecewise linear and monotone in gamma
and the largest gamma has a closed form: sort the D breakpoints, prefix-sum the slopes, find
the crossing segment per pnode -- O(D log D + D*P), no iteration.  Integer plans take the floor
of every entry (so no pnode can exceed what the real-valued plan uses), then hand the few
rounding MiB back to domains where pnodes have slack; a domain may end up to V*P MiB below its
real-valued target, never below dyn_min nor above dyn_max.

Inactive / uncooperative domains (``active`` False) are left out of the round: target held at
``actual_mib``, backing unchanged, and their pnode usage counted as the larger of their backing
and their actual size (grown like P_1 when actual exceeds the backing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .errors import InfeasibleError, InputError

__all__ = ["SqueezeInput", "SqueezePlan", "cumulative_round", "grow", "shrink", "squeeze"]

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
B = NDArray[np.bool_]


@dataclass(frozen=True, eq=False, kw_only=True)
class SqueezeInput:
    """All domains of one host, padded to V vnodes (padding: size 0, backing 0).

    Exactly one request form: ``free_mib`` (P,) per pnode, ``total_free_mib`` host-wide, or
    ``balance=True`` (share all free memory out).
    """

    backing_mib: I64  # (D, V, P)
    size_mib: I64  # (D, V)
    home: I64  # (D, V) home pnode of each vnode (used when a vnode has no backing yet)
    dynamic_min_mib: I64  # (D,)
    dynamic_max_mib: I64  # (D,)
    target_mib: I64  # (D,)
    actual_mib: I64  # (D,)
    active: B  # (D,)
    capacity_mib: I64  # (P,)
    claimed_mib: I64  # (P,)
    free_mib: I64 | None = None
    total_free_mib: int | None = None
    balance: bool = False


@dataclass(frozen=True, eq=False, kw_only=True)
class SqueezePlan:
    """Result: apply ``decreases`` first, wait until that memory is really free, then
    ``increases`` (squeezed's two phases, so the host never transiently overcommits)."""

    gamma: float
    target_mib: I64  # (D,)
    backing_mib: I64  # (D, V, P)
    vnode_target_mib: I64  # (D, V)
    free_mib_after: I64  # (P,) capacity - claimed - usage after the plan
    decreases: tuple[int, ...]
    increases: tuple[int, ...]

    @property
    def order(self) -> tuple[int, ...]:
        return self.decreases + self.increases


def _seg_bounds(seg: I64, n_seg: int) -> tuple[I64, I64]:
    counts = np.bincount(seg, minlength=n_seg).astype(np.int64)
    stop = np.cumsum(counts)
    return stop - counts, stop


def cumulative_round(
    total: I64, weights: I64, seg: I64, bounds: tuple[I64, I64] | None = None
) -> I64:
    """Split ``total[s]`` over the entries of segment s (``seg`` sorted) by rounding cumulative
    sums with exact integer arithmetic.

    Sort-free and 1-D (cheap on big batches); each share is the floor or ceiling of
    ``total * w / sum(w)``, so it never exceeds its weight when total <= sum(w).
    """
    if weights.size == 0:
        return np.zeros_like(weights)
    start, stop = _seg_bounds(seg, total.shape[0]) if bounds is None else bounds
    c0 = np.concatenate([np.zeros(1, np.int64), np.cumsum(weights)])
    before = c0[start]
    ssum = c0[stop] - before
    cseg = c0[1:] - before[seg]
    r = (total[seg] * cseg) // np.maximum(ssum, 1)[seg]
    prev = np.concatenate([np.zeros(1, np.int64), r[:-1]])
    prev[start[stop > start]] = 0
    out: I64 = r - prev
    return out


@dataclass(frozen=True, kw_only=True)
class _Entries:
    """Sparse (d, v, p) pattern of a batch of backings, sorted by (d, v, p).

    Memory only ever moves along existing entries, plus the home pnode of an empty vnode, so
    every anchor plan shares one pattern; with Xen-style one pnode per vnode that is D*V
    entries instead of D*V*P, and every step is a 1-D segment operation.
    """

    d: I64
    v: I64
    p: I64
    vid: I64  # d * V + v
    n_dom: int
    n_v: int
    n_p: int
    d_bounds: tuple[I64, I64]
    vid_bounds: tuple[I64, I64]

    def col(self, val: I64) -> I64:
        flat = np.bincount(self.d * self.n_p + self.p, weights=val, minlength=self.n_dom * self.n_p)
        out: I64 = np.rint(flat).astype(np.int64).reshape(self.n_dom, self.n_p)
        return out

    def dom(self, val: I64) -> I64:
        out: I64 = np.rint(np.bincount(self.d, weights=val, minlength=self.n_dom)).astype(np.int64)
        return out

    def dense(self, val: I64) -> I64:
        out = np.zeros((self.n_dom, self.n_v, self.n_p), dtype=np.int64)
        out[self.d, self.v, self.p] = val
        return out


def _entries(x: I64, size: I64, home: I64, rows: I64) -> tuple[_Entries, I64]:
    k, nv, npn = x.shape
    mask = (x > 0).ravel()
    ed, ev = np.nonzero((rows == 0) & (size > 0))
    mask[(ed * nv + ev) * npn + home[ed, ev]] = True
    flat = np.flatnonzero(mask).astype(np.int64)
    vid, p = np.divmod(flat, npn)
    d, v = np.divmod(vid, nv)
    e = _Entries(
        d=d,
        v=v,
        p=p,
        vid=vid,
        n_dom=k,
        n_v=nv,
        n_p=npn,
        d_bounds=_seg_bounds(d, k),
        vid_bounds=_seg_bounds(vid, k * nv),
    )
    return e, x.ravel()[flat]


def shrink(e: _Entries, val: I64, amount: I64) -> I64:
    """Remove ``amount[d]`` from domain d with every (vnode, pnode) entry scaled down alike."""
    if not amount.any():
        return val
    out: I64 = val - cumulative_round(amount, val, e.d, e.d_bounds)
    return out


def grow(e: _Entries, val: I64, amount: I64, size: I64) -> I64:
    """Add ``amount[d]`` (<= free room); see the module docstring for the shares."""
    if not amount.any():
        return val
    nvid = e.n_dom * e.n_v
    rows = np.rint(np.bincount(e.vid, weights=val, minlength=nvid)).astype(np.int64)
    room = np.maximum(size.reshape(nvid) - rows, 0)
    vstart = np.arange(e.n_dom, dtype=np.int64) * e.n_v
    per_vnode = cumulative_round(
        amount, room, np.arange(nvid, dtype=np.int64) // e.n_v, (vstart, vstart + e.n_v)
    )
    w = np.where(rows[e.vid] > 0, val, 1)
    out: I64 = val + cumulative_round(per_vnode, w, e.vid, e.vid_bounds)
    return out


def _check(inp: SqueezeInput) -> None:
    x = inp.backing_mib
    if x.ndim != 3:
        raise InputError("backing_mib must be (D, V, P)")
    d, v, p = x.shape
    shapes = {
        "size_mib": (inp.size_mib, (d, v)),
        "home": (inp.home, (d, v)),
        "dynamic_min_mib": (inp.dynamic_min_mib, (d,)),
        "dynamic_max_mib": (inp.dynamic_max_mib, (d,)),
        "target_mib": (inp.target_mib, (d,)),
        "actual_mib": (inp.actual_mib, (d,)),
        "active": (inp.active, (d,)),
        "capacity_mib": (inp.capacity_mib, (p,)),
        "claimed_mib": (inp.claimed_mib, (p,)),
    }
    for name, (arr, shape) in shapes.items():
        if np.shape(arr) != shape:
            raise InputError(f"{name} must have shape {shape}, got {np.shape(arr)}")
    forms = (inp.free_mib is not None) + (inp.total_free_mib is not None) + bool(inp.balance)
    if forms != 1:
        raise InputError("give exactly one of free_mib, total_free_mib, balance")
    if inp.free_mib is not None and np.shape(inp.free_mib) != (p,):
        raise InputError(f"free_mib must have shape {(p,)}")
    if (x < 0).any() or (inp.size_mib < 0).any() or (inp.actual_mib < 0).any():
        raise InputError("backing, sizes and actual sizes must be non-negative")
    if v and ((inp.home < 0) | (inp.home >= p)).any():
        raise InputError("home must index a pnode")
    mn, mx = inp.dynamic_min_mib, inp.dynamic_max_mib
    if (mn < 0).any() or (mn > mx).any() or (mx > inp.size_mib.sum(axis=1)).any():
        raise InputError("need 0 <= dynamic_min <= dynamic_max <= sum(size) per domain")
    if (inp.free_mib is not None and (np.asarray(inp.free_mib) < 0).any()) or (
        inp.total_free_mib is not None and inp.total_free_mib < 0
    ):
        raise InputError("requested free memory must be non-negative")


def _gamma_per_pnode(g: F64, col0: F64, colm: F64, col1: F64, limit: F64) -> F64:
    """Largest gamma in [0, 1] per pnode with sum_d usage_d(gamma) <= limit (assumed at 0)."""
    k = g.shape[0]
    order = np.argsort(g, kind="stable")
    gs = g[order]
    c0, cm, c1 = col0[order], colm[order], col1[order]
    gcol = gs[:, None]
    s1 = np.divide(cm - c0, gcol, out=np.zeros_like(c0), where=gcol > 0)
    s2 = np.divide(c1 - cm, 1.0 - gcol, out=np.zeros_like(c0), where=gcol < 1)
    a2 = cm - gcol * s2
    zero = np.zeros((1, col0.shape[1]))
    pa1 = np.concatenate([zero, np.cumsum(c0, axis=0)])  # (K+1, P)
    pb1 = np.concatenate([zero, np.cumsum(s1, axis=0)])
    pa2 = np.concatenate([zero, np.cumsum(a2, axis=0)])
    pb2 = np.concatenate([zero, np.cumsum(s2, axis=0)])
    # Segment j (0..K) spans [bounds[j], bounds[j+1]]; the first j sorted domains are past
    # their breakpoint there.
    a = (pa1[-1] - pa1) + pa2
    b = (pb1[-1] - pb1) + pb2
    bounds = np.concatenate([[0.0], gs, [1.0]])
    right = bounds[1:, None]
    over = a + b * right > limit[None, :] + 1e-9
    first = np.argmax(over, axis=0)  # (P,)
    anyover = over.any(axis=0)
    cols = np.arange(col0.shape[1])
    aj, bj = a[first, cols], b[first, cols]
    lo, hi = bounds[first], bounds[first + 1]
    gam = np.divide(limit - aj, bj, out=hi.copy(), where=bj > 0)
    gam = np.clip(gam, lo, hi)
    out: F64 = np.where(anyover, gam, 1.0) if k else np.ones(col0.shape[1])
    return out


@dataclass(frozen=True, kw_only=True)
class _Anchors:
    """The active domains' three anchor plans on one sparse pattern (see the module docstring).

    ``p0``/``pm``/``p1``: entry values at gamma 0, at the breakpoint ``g`` (D,) and at 1;
    ``mn``/``mx``: the active domains' dynamic range (D,); ``top`` (D,): each one's target at
    gamma 1 (``mx`` when balancing, its current size clamped to the range when freeing)."""

    e: _Entries
    p0: I64
    pm: I64
    p1: I64
    g: F64
    mn: I64
    mx: I64
    top: I64

    @property
    def rng(self) -> I64:
        out: I64 = self.mx - self.mn
        return out


def _held_inactive(inp: SqueezeInput, x: I64, rows: I64, ina: B) -> I64:
    """(P,) usage of the inactive domains: max(backing, actual) per pnode, grown like P_1."""
    size = np.asarray(inp.size_mib, dtype=np.int64)
    home = np.asarray(inp.home, dtype=np.int64)
    cur = rows.sum(axis=1)
    actual = np.minimum(np.asarray(inp.actual_mib, dtype=np.int64), size.sum(axis=1))
    ei, vi = _entries(x[ina], size[ina], home[ina], rows[ina])
    held = grow(ei, vi, np.maximum(actual[ina] - cur[ina], 0), size[ina])
    out: I64 = ei.col(held).sum(axis=0)
    return out


def _anchors(inp: SqueezeInput, x: I64, rows: I64, act: B) -> _Anchors:
    """P_0, P_mid and P_1 of the active domains and each one's breakpoint gamma; P_1 is P_mid
    unless the request is to balance (a request to free memory raises no target)."""
    size = np.asarray(inp.size_mib, dtype=np.int64)
    home = np.asarray(inp.home, dtype=np.int64)
    mn = np.asarray(inp.dynamic_min_mib, dtype=np.int64)
    mx = np.asarray(inp.dynamic_max_mib, dtype=np.int64)
    cur = rows.sum(axis=1)
    sa, mna, mxa, cura = size[act], mn[act], mx[act], cur[act]
    e, val = _entries(x[act], sa, home[act], rows[act])
    mid = np.clip(cura, mna, mxa)
    pm = grow(e, shrink(e, val, np.maximum(cura - mid, 0)), np.maximum(mid - cura, 0), sa)
    p0 = shrink(e, pm, mid - mna)
    top = mxa if inp.balance else mid
    p1 = grow(e, pm, top - mid, sa)
    rng = mxa - mna
    g = np.divide(
        (mid - mna).astype(np.float64),
        rng.astype(np.float64),
        out=np.zeros(mid.shape[0]),
        where=rng > 0,
    )
    return _Anchors(e=e, p0=p0, pm=pm, p1=p1, g=g, mn=mna, mx=mxa, top=top)


def _infeasible(
    inp: SqueezeInput, free_cap: I64, used0: I64, bad: I64, req: I64
) -> InfeasibleError:
    """Why even gamma = 0 fails, and the most that could be freed (``squeeze``'s docstring).

    ``free_cap``: capacity - claimed - inactive usage per pnode; ``bad``: failing pnodes."""
    freeable = free_cap - used0
    over = np.flatnonzero(freeable < 0)
    if over.size:
        maxf = 0
        why = (
            f"pnodes {over.tolist()} are over capacity even with every active domain at dynamic_min"
        )
    elif inp.free_mib is not None:
        maxf = int(np.minimum(req, freeable).sum())
        why = (
            f"pnodes {bad.tolist()} cannot free the requested memory even with every "
            f"active domain at dynamic_min (freeable there: {freeable[bad].tolist()} MiB)"
        )
    else:
        maxf = int(freeable.sum())
        why = (
            f"only {maxf} MiB can be freed on this host with every active domain at "
            f"dynamic_min (requested {inp.total_free_mib} MiB)"
        )
    return InfeasibleError(maxf, why)


def _gamma(a: _Anchors, limit: I64, budget: int | None) -> float:
    """The largest shared gamma in [0, 1] within every pnode's ``limit`` and the budget (the
    host-wide total is one more column, with the same piecewise-linear usage)."""
    e = a.e
    cols = [e.col(a.p0), e.col(a.pm), e.col(a.p1)]
    limits = limit
    if budget is not None:
        cols = [np.column_stack([c, c.sum(axis=1)]) for c in cols]
        limits = np.append(limit, budget)
    c0, cm, c1 = (c.astype(np.float64) for c in cols)
    gp = _gamma_per_pnode(a.g, c0, cm, c1, limits.astype(np.float64))
    return min(max(float(gp.min(initial=1.0)), 0.0), 1.0)


def _integer_usage(
    a: _Anchors, p: int, gamma: float, limit: I64, budget: int | None
) -> tuple[float, I64, I64]:
    """The integer plan at ``gamma``, backed off a hair while float slop breaks a limit.

    Returns gamma, the entry values and their per-pnode usage (P,)."""
    e = a.e
    perm = np.argsort(e.d * p + e.p, kind="stable")
    ua = _integer_plan(a, perm, gamma, limit)
    for i in range(6):  # float slop only: back gamma off a hair and retry
        ucol = e.col(ua).sum(axis=0)
        if (ucol <= limit).all() and (budget is None or int(ua.sum()) <= budget):
            break
        gamma = max(gamma - 1e-9 * (16**i), 0.0)
        ua = _integer_plan(a, perm, gamma, limit)
    else:
        gamma, ua = 0.0, a.p0
        ucol = e.col(ua).sum(axis=0)
    return gamma, ua, ucol


def squeeze(inp: SqueezeInput) -> SqueezePlan:
    """Plan one squeeze / balance round for a host; see the module docstring.

    Raises ``InfeasibleError`` when even gamma = 0 (every active domain at dynamic_min) cannot
    satisfy the request.  ``max_feasible_mib`` is then, for ``total_free_mib``, the largest
    total that could be freed; for ``free_mib``, the sum over pnodes of
    ``min(requested, freeable)`` -- asking for ``min(requested, freeable)`` per pnode succeeds.
    """
    _check(inp)
    x = np.asarray(inp.backing_mib, dtype=np.int64)
    p = x.shape[2]
    act = np.asarray(inp.active, dtype=bool)
    cap = np.asarray(inp.capacity_mib, dtype=np.int64) - np.asarray(inp.claimed_mib, np.int64)
    rows = x.sum(axis=2)
    if (rows > np.asarray(inp.size_mib, dtype=np.int64)).any():
        raise InputError("a vnode is backed beyond its size")
    fixed = _held_inactive(inp, x, rows, ~act)  # (P,)
    a = _anchors(inp, x, rows, act)
    req = (
        np.zeros(p, dtype=np.int64)
        if inp.free_mib is None
        else np.asarray(inp.free_mib, dtype=np.int64)
    )
    limit = cap - fixed - req  # per-pnode bound on active domains' usage
    used0 = a.e.col(a.p0).sum(axis=0)
    budget: int | None = None
    if inp.total_free_mib is not None:
        budget = int(cap.sum() - fixed.sum() - inp.total_free_mib)
    bad = np.flatnonzero(used0 > limit)
    if bad.size or (budget is not None and int(a.mn.sum()) > budget):
        raise _infeasible(inp, cap - fixed, used0, bad, req)
    gamma, ua, ucol = _integer_usage(a, p, _gamma(a, limit, budget), limit, budget)
    return _plan(inp, x, rows, act, a.e, ua, gamma, (cap - (fixed + ucol)).astype(np.int64))


def _plan(
    inp: SqueezeInput, x: I64, rows: I64, act: B, e: _Entries, ua: I64, gamma: float, free: I64
) -> SqueezePlan:
    """The plan of the active domains' entry values ``ua``; ``free``: free MiB per pnode."""
    new_x = x.copy()
    new_x[act] = e.dense(ua)
    vt = rows.copy()
    vt[act] = (
        np.bincount(e.vid, weights=ua, minlength=e.n_dom * e.n_v)
        .astype(np.int64)
        .reshape(e.n_dom, e.n_v)
    )
    new_t = np.where(act, vt.sum(axis=1), np.asarray(inp.actual_mib, dtype=np.int64))
    old_t = np.asarray(inp.target_mib, dtype=np.int64)
    dec = tuple(np.flatnonzero(act & (new_t < old_t)).tolist())
    inc = tuple(np.flatnonzero(act & (new_t > old_t)).tolist())
    return SqueezePlan(
        gamma=gamma,
        target_mib=new_t.astype(np.int64),
        backing_mib=new_x,
        vnode_target_mib=vt,
        free_mib_after=free,
        decreases=dec,
        increases=inc,
    )


def _integer_plan(a: _Anchors, perm: NDArray[np.intp], gamma: float, limit: I64) -> I64:
    """Floor every entry of the real-valued plan, then give rounding MiB back where pnodes
    have slack (domains in index order), never past the real-valued target."""
    e, p0, pm, p1 = a.e, a.p0, a.pm, a.p1
    if e.n_dom == 0:
        return p0
    ge = a.g[e.d]
    t1 = np.divide(gamma, ge, out=np.ones_like(ge), where=ge > 0)
    t2 = np.divide(gamma - ge, 1.0 - ge, out=np.zeros_like(ge), where=ge < 1)
    lin = np.where(
        gamma < ge, p0 + np.minimum(t1, 1.0) * (pm - p0), pm + np.clip(t2, 0.0, 1.0) * (p1 - pm)
    )
    u = np.clip(np.floor(lin).astype(np.int64), p0, p1)
    frac = ((lin - u) > 1e-9).astype(np.int64)
    want_t = np.minimum(np.floor(a.mn + gamma * a.rng + 1e-9).astype(np.int64), a.top)
    short = np.maximum(want_t - e.dom(u), 0)
    # k-th fractional entry of its domain (1-based), by a segmented cumulative count.
    cf = np.cumsum(frac)
    start = e.d_bounds[0]
    base = np.concatenate([np.zeros(1, np.int64), cf])[start]
    want = (frac > 0) & (cf - base[e.d] <= short[e.d])
    dem = e.col(want.astype(np.int64))  # (K, P)
    slack = limit - e.col(u).sum(axis=0)
    before = np.cumsum(dem, axis=0) - dem
    grant = np.clip(slack[None, :] - before, 0, dem).ravel()
    # Within each (domain, pnode) group take the first ``grant`` wanted entries.
    key = (e.d * e.n_p + e.p)[perm]
    ws = want[perm].astype(np.int64)
    cw = np.cumsum(ws)
    gstart, _ = _seg_bounds(key, e.n_dom * e.n_p)
    gbase = np.concatenate([np.zeros(1, np.int64), cw])[gstart]
    pick_s = (ws > 0) & (cw - gbase[key] <= grant[key])
    pick = np.zeros_like(u)
    pick[perm] = pick_s
    out: I64 = u + pick
    return out
