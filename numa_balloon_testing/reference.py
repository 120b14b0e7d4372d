"""Slow pure-Python references (plain loops, no numpy in the algorithms).

They implement the documented semantics literally -- round-robin hands out one block per pool
per round, assignment walks pnodes nearest-first one vnode at a time, gamma is found by
bisection -- so agreement with the vectorised engine checks the vectorisation, not a shared
helper.
"""

from __future__ import annotations

from dataclasses import dataclass


def ref_proportional(target: int, size: list[int]) -> list[int]:
    s = sum(size)
    if s == 0:
        return [0] * len(size)
    q = [target * w // s for w in size]
    rem = [target * w - qq * s for w, qq in zip(size, q, strict=True)]
    left = target - sum(q)
    for v in sorted(range(len(size)), key=lambda i: (-rem[i], i))[:left]:
        q[v] += 1
    return q


def ref_round_robin(amount: int, cap: list[int], block: int) -> list[int]:
    got = [0] * len(cap)
    while amount > 0:
        moved = False
        for v in range(len(cap)):
            take = min(block, cap[v] - got[v], amount)
            if take > 0:
                got[v] += take
                amount -= take
                moved = True
        if not moved:
            raise ValueError("amount exceeds capacity")
    return got


def ref_vnode_targets(
    target: int,
    size: list[int],
    policy: str,
    cur_t: list[int],
    vdist: list[list[int]],
    block: int,
    weight: list[int],
) -> list[int]:
    if policy == "proportional":
        return ref_proportional(target, size)
    cur = [min(max(c, 0), s) for c, s in zip(cur_t, size, strict=True)]
    delta = target - sum(cur)
    grow = delta >= 0
    amount = abs(delta)
    cap = [s - c if grow else c for s, c in zip(size, cur, strict=True)]
    if policy == "round-robin":
        change = ref_round_robin(amount, cap, block)
    else:
        a = max(range(len(size)), key=lambda i: (weight[i], -i))
        order = sorted(range(len(size)), key=lambda v: (vdist[a][v], v))
        if not grow:
            order.reverse()
        change = [0] * len(size)
        for v in order:
            take = min(cap[v], amount)
            change[v] = take
            amount -= take
    return [c + d if grow else c - d for c, d in zip(cur, change, strict=True)]


def ref_assign(
    t: list[int],
    headroom: list[int],
    home: list[int],
    pdist: list[list[int]],
    current: list[list[int]] | None,
) -> list[list[int]]:
    nv, npn = len(t), len(headroom)
    hcap = [max(h, 0) for h in headroom]
    order = [sorted(range(npn), key=lambda q, a=a: (pdist[a][q], q)) for a in range(npn)]
    x = [[0] * npn for _ in range(nv)]
    if current is not None:
        for v in range(nv):
            need = t[v]
            for q in order[home[v]]:
                keep = min(max(current[v][q], 0), need)
                x[v][q] = keep
                need -= keep
        for q in range(npn):
            excess = sum(x[v][q] for v in range(nv)) - hcap[q]
            for v in reversed(range(nv)):
                if excess <= 0:
                    break
                d = min(excess, x[v][q])
                x[v][q] -= d
                excess -= d
    r = [t[v] - sum(x[v]) for v in range(nv)]
    hrem = [hcap[q] - sum(x[v][q] for v in range(nv)) for q in range(npn)]
    for k in range(npn):
        for v in range(nv):
            if r[v] > 0:
                q = order[home[v]][k]
                g = min(r[v], hrem[q])
                x[v][q] += g
                r[v] -= g
                hrem[q] -= g
    if any(r):
        raise ValueError("unplaced")
    return x


def ref_distribute(
    target: int,
    size: list[int],
    headroom: list[int],
    home: list[int],
    vdist: list[list[int]],
    pdist: list[list[int]],
    policy: str,
    current: list[list[int]] | None = None,
    block: int = 128,
    weight: list[int] | None = None,
) -> list[list[int]]:
    if target > min(sum(size), sum(max(h, 0) for h in headroom)):
        raise ValueError("infeasible")
    w = weight if weight is not None else [1 if s > 0 else 0 for s in size]
    cur_t = [sum(row) for row in current] if current is not None else [0] * len(size)
    t = ref_vnode_targets(target, size, policy, cur_t, vdist, block, w)
    return ref_assign(t, headroom, home, pdist, current)


# --------------------------------------------------------------------------- squeeze


def _cumround(total: int, weights: list[int]) -> list[int]:
    s = sum(weights)
    out, prev, c = [], 0, 0
    for w in weights:
        c += w
        r = total * c // s if s else 0
        out.append(r - prev)
        prev = r
    return out


def _shrink(x: list[list[int]], amount: int) -> list[list[int]]:
    nv, npn = len(x), len(x[0]) if x else 0
    flat = [x[v][p] for v in range(nv) for p in range(npn)]
    rem = _cumround(amount, flat)
    return [[flat[v * npn + p] - rem[v * npn + p] for p in range(npn)] for v in range(nv)]


def _pattern(x: list[list[int]], size: list[int], home: list[int]) -> list[list[bool]]:
    """Entries memory may move along: the backing's non-zeros, or an empty vnode's home."""
    return [
        [row[q] > 0 or (sum(row) == 0 and size[v] > 0 and q == home[v]) for q in range(len(row))]
        for v, row in enumerate(x)
    ]


def _grow(
    x: list[list[int]], amount: int, size: list[int], pattern: list[list[bool]]
) -> list[list[int]]:
    rows = [sum(r) for r in x]
    per_v = _cumround(amount, [max(s - r, 0) for s, r in zip(size, rows, strict=True)])
    out = []
    for v, row in enumerate(x):
        pat = [1 if pattern[v][q] else 0 for q in range(len(row))]
        w = list(row) if rows[v] > 0 else pat
        add = _cumround(per_v[v], w) if per_v[v] else [0] * len(row)
        out.append([a + b for a, b in zip(row, add, strict=True)])
    return out


@dataclass
class RefSqueeze:
    gamma: float
    targets: list[int]  # real-valued targets floored (active), actual (inactive)
    fixed: list[int]
    p0_cols: list[list[int]]


def ref_squeeze(
    backing: list[list[list[int]]],
    size: list[list[int]],
    home: list[list[int]],
    dmin: list[int],
    dmax: list[int],
    actual: list[int],
    active: list[bool],
    capacity: list[int],
    claimed: list[int],
    free: list[int] | None = None,
    total_free: int | None = None,
) -> RefSqueeze:
    """Same anchor model as the engine; gamma by 200-step bisection on the float usage. A request
    to free memory (free or total_free given) raises no target: P_1 is P_mid, top is mid."""
    nd, npn = len(backing), len(capacity)
    balance = free is None and total_free is None
    tops: list[int] = list(dmax)
    fixed = [0] * npn
    anchors = []
    for d in range(nd):
        x = backing[d]
        cur = sum(map(sum, x))
        pat = _pattern(x, size[d], home[d])
        if not active[d]:
            held = _grow(x, max(min(actual[d], sum(size[d])) - cur, 0), size[d], pat)
            for row in held:
                for q in range(npn):
                    fixed[q] += row[q]
            anchors.append(None)
            continue
        mid = min(max(cur, dmin[d]), dmax[d])
        pm = _grow(_shrink(x, max(cur - mid, 0)), max(mid - cur, 0), size[d], pat)
        p0 = _shrink(pm, mid - dmin[d])
        tops[d] = dmax[d] if balance else mid
        p1 = _grow(pm, tops[d] - mid, size[d], pat)
        rng = dmax[d] - dmin[d]
        g = (mid - dmin[d]) / rng if rng else 0.0
        cols = [[sum(row[q] for row in a) for q in range(npn)] for a in (p0, pm, p1)]
        anchors.append((g, cols))
    req = free if free is not None else [0] * npn
    limit = [capacity[q] - claimed[q] - fixed[q] - req[q] for q in range(npn)]
    budget = None
    if total_free is not None:
        budget = sum(capacity) - sum(claimed) - sum(fixed) - total_free

    def usage(gamma: float) -> list[float]:
        u = [0.0] * npn
        for a in anchors:
            if a is None:
                continue
            g, (c0, cm, c1) = a
            for q in range(npn):
                if gamma < g:
                    u[q] += c0[q] + gamma / g * (cm[q] - c0[q])
                else:
                    t = (gamma - g) / (1 - g) if g < 1 else 0.0
                    u[q] += cm[q] + t * (c1[q] - cm[q])
        return u

    def ok(gamma: float) -> bool:
        u = usage(gamma)
        if any(u[q] > limit[q] + 1e-6 for q in range(npn)):
            return False
        if budget is not None:
            tot = sum(
                min(dmin[d] + gamma * (dmax[d] - dmin[d]), tops[d]) for d in range(nd) if active[d]
            )
            return tot <= budget + 1e-6
        return True

    if not ok(0.0):
        raise ValueError("infeasible")
    lo, hi = 0.0, 1.0
    if ok(1.0):
        lo = 1.0
    else:
        for _ in range(200):
            mid_g = (lo + hi) / 2
            if ok(mid_g):
                lo = mid_g
            else:
                hi = mid_g
    targets = [
        min(int(dmin[d] + lo * (dmax[d] - dmin[d]) + 1e-9), tops[d]) if active[d] else actual[d]
        for d in range(nd)
    ]
    p0_cols = [a[1][0] if a is not None else [0] * npn for a in anchors]
    return RefSqueeze(lo, targets, fixed, p0_cols)
