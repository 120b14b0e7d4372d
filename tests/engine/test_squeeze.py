from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numa_balloon_testing.reference import ref_squeeze
from service.engine import InfeasibleError, InputError, SqueezeInput, SqueezePlan, squeeze

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def hosts(draw: st.DrawFn) -> SqueezeInput:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    d = int(rng.integers(1, 16))
    v = int(rng.integers(1, 6))
    p = int(rng.integers(1, 8))
    nv = rng.integers(1, v + 1, size=d)
    size = (rng.integers(1, 16, size=(d, v)) * 256).astype(np.int64)
    size[np.arange(v)[None, :] >= nv[:, None]] = 0  # padding
    home = rng.integers(0, p, size=(d, v)).astype(np.int64)
    frac = rng.random((d, v)) * (rng.random((d, 1)) < 0.9)  # some domains at zero
    t = (frac * size).astype(np.int64)
    x = np.zeros((d, v, p), np.int64)
    np.put_along_axis(x, home[:, :, None], t[:, :, None], axis=2)
    if p > 1:
        other = rng.integers(0, p, size=(d, v))
        move = (x.sum(axis=2) * rng.random((d, v)) * (rng.random((d, v)) < 0.3)).astype(np.int64)
        np.put_along_axis(
            x, home[:, :, None], np.take_along_axis(x, home[:, :, None], 2) - move[:, :, None], 2
        )
        x[np.arange(d)[:, None], np.arange(v)[None, :], other] += move
    smax = size.sum(axis=1)
    a = rng.integers(0, smax + 1)
    b = rng.integers(0, smax + 1)
    mn, mx = np.minimum(a, b), np.maximum(a, b)
    cur = x.sum(axis=(1, 2))
    active = rng.random(d) < 0.8
    actual = np.where(rng.random(d) < 0.5, cur, rng.integers(0, smax + 1)).astype(np.int64)
    used_now = x.sum(axis=1).sum(axis=0)
    claimed = rng.integers(0, 512, size=p).astype(np.int64)
    capacity = used_now + claimed + rng.integers(0, 4096 * d // p + 2, size=p)
    if rng.random() < 0.2:
        capacity = used_now + claimed  # a full host
    kind = rng.integers(0, 3)
    req: dict[str, object] = {}
    if kind == 0:
        req["balance"] = True
    elif kind == 1:
        req["total_free_mib"] = int(rng.integers(0, int(capacity.sum()) // 2 + 1))
    else:
        req["free_mib"] = rng.integers(0, 2048, size=p).astype(np.int64)
    return SqueezeInput(
        backing_mib=x,
        size_mib=size,
        home=home,
        dynamic_min_mib=mn.astype(np.int64),
        dynamic_max_mib=mx.astype(np.int64),
        target_mib=cur,
        actual_mib=actual,
        active=active,
        capacity_mib=capacity.astype(np.int64),
        claimed_mib=claimed,
        **req,
    )


def _check(inp: SqueezeInput, plan: SqueezePlan) -> None:
    x, act = plan.backing_mib, inp.active
    assert (x >= 0).all()
    assert (x.sum(axis=2) <= inp.size_mib).all()
    assert (plan.vnode_target_mib == x.sum(axis=2)).all()
    t = plan.target_mib
    assert (x.sum(axis=(1, 2))[act] == t[act]).all()
    assert (t[act] >= inp.dynamic_min_mib[act]).all()
    assert (t[act] <= inp.dynamic_max_mib[act]).all()
    assert (t[~act] == inp.actual_mib[~act]).all()
    assert (x[~act] == inp.backing_mib[~act]).all()
    held = np.maximum(inp.actual_mib, inp.backing_mib.sum(axis=(1, 2)))
    assert 0.0 <= plan.gamma <= 1.0
    free = plan.free_mib_after
    room = inp.capacity_mib - inp.claimed_mib
    assert (free >= 0).all()  # per-pnode capacity never exceeded
    assert int(room.sum() - free.sum()) == int(t[act].sum() + held[~act].sum())
    if inp.free_mib is not None:
        assert (free >= inp.free_mib).all()
    if inp.total_free_mib is not None:
        assert int(free.sum()) >= inp.total_free_mib
    if not inp.balance:  # freeing memory lowers targets, never raises one
        current = np.clip(inp.target_mib, inp.dynamic_min_mib, inp.dynamic_max_mib)
        assert (t[act] <= current[act]).all()
    for i in plan.decreases:
        assert act[i] and t[i] < inp.target_mib[i]
    for i in plan.increases:
        assert act[i] and t[i] > inp.target_mib[i]
    assert set(plan.order) == {int(i) for i in np.flatnonzero(act & (t != inp.target_mib))}


def _ref(inp: SqueezeInput) -> object:
    return ref_squeeze(
        inp.backing_mib.tolist(),
        inp.size_mib.tolist(),
        inp.home.tolist(),
        inp.dynamic_min_mib.tolist(),
        inp.dynamic_max_mib.tolist(),
        inp.actual_mib.tolist(),
        inp.active.tolist(),
        inp.capacity_mib.tolist(),
        inp.claimed_mib.tolist(),
        None if inp.free_mib is None else inp.free_mib.tolist(),
        inp.total_free_mib,
    )


@SETTINGS
@given(hosts())
def test_squeeze_invariants_and_reference_agreement(inp: SqueezeInput) -> None:
    try:
        plan = squeeze(inp)
    except InfeasibleError as e:
        with pytest.raises(ValueError):
            _ref(inp)
        _check_max_feasible(inp, e.max_feasible_mib)
        return
    _check(inp, plan)
    ref = _ref(inp)
    assert abs(plan.gamma - ref.gamma) < 1e-6  # type: ignore[attr-defined]
    slack = inp.size_mib.shape[1] * inp.capacity_mib.shape[0] + 1
    for i in np.flatnonzero(inp.active):
        rt = ref.targets[i]  # type: ignore[attr-defined]
        assert rt - slack <= plan.target_mib[i] <= rt + 1


def _check_max_feasible(inp: SqueezeInput, maxf: int) -> None:
    fits_at_all = True
    try:
        squeeze(dataclasses.replace(inp, free_mib=None, total_free_mib=None, balance=True))
    except InfeasibleError:
        fits_at_all = False
    if not fits_at_all:  # the host is overcommitted even with everybody at dynamic_min
        assert maxf == 0
        return
    if inp.total_free_mib is not None:
        _check(
            dataclasses.replace(inp, total_free_mib=maxf),
            squeeze(dataclasses.replace(inp, total_free_mib=maxf)),
        )
        with pytest.raises(InfeasibleError):
            squeeze(dataclasses.replace(inp, total_free_mib=maxf + 1))
    else:
        assert inp.free_mib is not None
        # Ask for as much as each pnode can give: it succeeds and frees maxf in total.
        probe = squeeze(
            dataclasses.replace(inp, free_mib=np.zeros_like(inp.free_mib), balance=False)
        )
        assert probe is not None
        ok = _freeable(inp)
        smaller = dataclasses.replace(inp, free_mib=np.minimum(inp.free_mib, ok))
        assert int(np.minimum(inp.free_mib, ok).sum()) == maxf
        _check(smaller, squeeze(smaller))


def _freeable(inp: SqueezeInput) -> np.ndarray:
    """Largest per-pnode free request that succeeds, found by asking one pnode at a time."""
    p = inp.capacity_mib.shape[0]
    out = np.zeros(p, dtype=np.int64)
    for q in range(p):
        lo, hi = 0, int(inp.capacity_mib[q])
        while lo < hi:
            mid = (lo + hi + 1) // 2
            req = np.zeros(p, dtype=np.int64)
            req[q] = mid
            try:
                squeeze(dataclasses.replace(inp, free_mib=req))
                lo = mid
            except InfeasibleError:
                hi = mid - 1
        out[q] = lo
    return out


def test_balance_shares_free_memory_with_one_gamma() -> None:
    inp = SqueezeInput(
        backing_mib=np.array([[[1024, 0]], [[0, 2048]]], dtype=np.int64),
        size_mib=np.array([[8192], [8192]]),
        home=np.array([[0], [1]]),
        dynamic_min_mib=np.array([1024, 2048]),
        dynamic_max_mib=np.array([8192, 8192]),
        target_mib=np.array([1024, 2048]),
        actual_mib=np.array([1024, 2048]),
        active=np.array([True, True]),
        capacity_mib=np.array([4096, 16384]),
        claimed_mib=np.array([0, 0]),
        balance=True,
    )
    plan = squeeze(inp)
    # pnode 0 binds: domain 0 grows to 4096 = 1024 + gamma * 7168.
    assert plan.target_mib[0] == 4096
    assert abs(plan.gamma - 3072 / 7168) < 1e-9
    assert plan.target_mib[1] == int(2048 + plan.gamma * 6144)
    assert plan.increases == (0, 1)


def test_freeing_memory_lowers_only_the_domains_above_the_shared_line() -> None:
    """The demo's lab-1node after admitting a guest: web, db and cache sit low in their ranges,
    the newcomer at its dynamic_max. Freeing 2048 MiB used to share gamma = 0.1875 out to
    everyone: web, db and cache were raised while the newcomer lost 3328 MiB. Now only the
    newcomer comes down, to the line where 2048 MiB are free, and nobody is raised."""
    mn = np.array([4096, 4096, 4096, 4096])
    mx = np.array([16384, 16384, 8192, 8192])
    t = np.array([5851, 5851, 4681, 8192])
    cap = int(t.sum()) + 1  # 1 MiB free
    inp = SqueezeInput(
        backing_mib=t.reshape(4, 1, 1).astype(np.int64),
        size_mib=mx.reshape(4, 1),
        home=np.zeros((4, 1), np.int64),
        dynamic_min_mib=mn,
        dynamic_max_mib=mx,
        target_mib=t,
        actual_mib=t,
        active=np.array([True] * 4),
        capacity_mib=np.array([cap]),
        claimed_mib=np.array([0]),
        total_free_mib=2048,
    )
    plan = squeeze(inp)
    assert plan.increases == () and plan.decreases == (3,)
    assert plan.target_mib.tolist() == [5851, 5851, 4681, 8192 - 2047]
    assert plan.free_mib_after.tolist() == [2048]
    # With memory to spare, a request to free some changes nothing.
    spare = squeeze(dataclasses.replace(inp, capacity_mib=np.array([cap + 30000])))
    assert spare.order == () and spare.target_mib.tolist() == t.tolist()
    # Handing memory out is what `balance` asks for.
    shared = squeeze(
        dataclasses.replace(
            inp, capacity_mib=np.array([cap + 30000]), total_free_mib=None, balance=True
        )
    )
    assert shared.target_mib.tolist() == mx.tolist()


def test_infeasible_names_the_pnode() -> None:
    inp = SqueezeInput(
        backing_mib=np.array([[[2048, 0]]], dtype=np.int64),
        size_mib=np.array([[4096]]),
        home=np.array([[0]]),
        dynamic_min_mib=np.array([1024]),
        dynamic_max_mib=np.array([4096]),
        target_mib=np.array([2048]),
        actual_mib=np.array([2048]),
        active=np.array([True]),
        capacity_mib=np.array([4096, 4096]),
        claimed_mib=np.array([0, 0]),
        free_mib=np.array([3584, 100]),
    )
    with pytest.raises(InfeasibleError) as ei:
        squeeze(inp)
    assert "[0]" in ei.value.reason
    assert ei.value.max_feasible_mib == 3072 + 100


def test_exactly_one_request_form() -> None:
    base = SqueezeInput(
        backing_mib=np.zeros((1, 1, 1), np.int64),
        size_mib=np.array([[128]]),
        home=np.array([[0]]),
        dynamic_min_mib=np.array([0]),
        dynamic_max_mib=np.array([128]),
        target_mib=np.array([0]),
        actual_mib=np.array([0]),
        active=np.array([True]),
        capacity_mib=np.array([1024]),
        claimed_mib=np.array([0]),
    )
    with pytest.raises(InputError):
        squeeze(base)
    with pytest.raises(InputError):
        squeeze(dataclasses.replace(base, balance=True, total_free_mib=3))
    plan = squeeze(dataclasses.replace(base, balance=True))
    assert plan.target_mib.tolist() == [128] and plan.gamma == 1.0
    assert plan.backing_mib.tolist() == [[[128]]]  # a domain at zero grows on its home
