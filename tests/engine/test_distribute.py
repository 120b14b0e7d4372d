from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numa_balloon_testing.reference import ref_distribute
from service.engine import InfeasibleError, InputError, distribute, distribute_many
from tests.engine.gen import DomainCase, domain_cases

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DETERMINISTIC = ("proportional", "round-robin", "nearest")


def _max_feasible(c: DomainCase) -> int:
    return int(min(c.size.sum(), np.maximum(c.headroom, 0).sum()))


def _check_invariants(x: np.ndarray, target: int, c: DomainCase) -> None:
    assert x.dtype == np.int64
    assert x.shape == (c.size.size, c.headroom.size)
    assert (x >= 0).all()
    assert int(x.sum()) == target
    assert (x.sum(axis=1) <= c.size).all()
    assert (x.sum(axis=0) <= np.maximum(c.headroom, 0)).all()


@FAST
@given(domain_cases(), st.sampled_from(DETERMINISTIC), st.floats(0, 1), st.booleans())
def test_deterministic_policies_keep_invariants_and_match_reference(
    c: DomainCase, policy: str, frac: float, use_current: bool
) -> None:
    mf = _max_feasible(c)
    target = int(mf * frac)
    cur = c.current if use_current else None
    x = distribute(
        target_mib=target,
        size_mib=c.size,
        headroom_mib=c.headroom,
        home=c.home,
        vdist=c.vdist,
        pdist=c.pdist,
        policy=policy,  # type: ignore[arg-type]
        current_mib=cur,
        block_mib=c.block,
        vcpu_count=c.weight,
    )
    _check_invariants(x, target, c)
    ref = ref_distribute(
        target,
        c.size.tolist(),
        c.headroom.tolist(),
        c.home.tolist(),
        c.vdist.tolist(),
        c.pdist.tolist(),
        policy,
        None if cur is None else cur.tolist(),
        c.block,
        c.weight.tolist(),
    )
    assert x.tolist() == ref


@FAST
@given(domain_cases(), st.sampled_from((*DETERMINISTIC, "faithful", "explicit")))
def test_infeasible_error_reports_the_true_maximum(c: DomainCase, policy: str) -> None:
    mf = _max_feasible(c)
    explicit = None
    if policy == "explicit":
        explicit = c.size.copy()
        target = int(c.size.sum())
        if target <= mf:
            return
    else:
        target = mf + 1
    with pytest.raises(InfeasibleError) as ei:
        distribute(
            target_mib=target,
            size_mib=c.size,
            headroom_mib=c.headroom,
            home=c.home,
            vdist=c.vdist,
            pdist=c.pdist,
            policy=policy,  # type: ignore[arg-type]
            explicit_targets_mib=explicit,
            block_mib=c.block,
            vcpu_count=c.weight,
        )
    assert ei.value.max_feasible_mib == mf
    if policy == "explicit":
        return
    x = distribute(
        target_mib=mf,
        size_mib=c.size,
        headroom_mib=c.headroom,
        home=c.home,
        vdist=c.vdist,
        pdist=c.pdist,
        policy=policy,  # type: ignore[arg-type]
        block_mib=c.block,
        vcpu_count=c.weight,
    )
    _check_invariants(x, mf, c)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(domain_cases(max_v=12, max_p=16), st.floats(0, 1))
def test_faithful_keeps_invariants_and_is_no_worse_than_proportional(
    c: DomainCase, frac: float
) -> None:
    from service.engine import distortion

    target = int(_max_feasible(c) * frac)
    x = distribute(
        target_mib=target,
        size_mib=c.size,
        headroom_mib=c.headroom,
        home=c.home,
        vdist=c.vdist,
        pdist=c.pdist,
        policy="faithful",
        vcpu_count=c.weight,
    )
    _check_invariants(x, target, c)
    y = distribute(
        target_mib=target,
        size_mib=c.size,
        headroom_mib=c.headroom,
        home=c.home,
        vdist=c.vdist,
        pdist=c.pdist,
        policy="proportional",
        vcpu_count=c.weight,
    )
    args = {"vdist": c.vdist, "pdist": c.pdist, "home": c.home, "vcpu_count": c.weight}
    assert distortion(backing_mib=x, **args) <= distortion(backing_mib=y, **args) + 1e-6


@FAST
@given(domain_cases(), st.data())
def test_explicit_targets_are_backed_exactly(c: DomainCase, data: st.DataObject) -> None:
    mf = _max_feasible(c)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    t = (rng.random(c.size.size) * (c.size + 1)).astype(np.int64)
    while t.sum() > mf:
        t //= 2
    x = distribute(
        target_mib=int(t.sum()),
        size_mib=c.size,
        headroom_mib=c.headroom,
        home=c.home,
        vdist=c.vdist,
        pdist=c.pdist,
        policy="explicit",
        explicit_targets_mib=t,
        vcpu_count=c.weight,
    )
    _check_invariants(x, int(t.sum()), c)
    assert x.sum(axis=1).tolist() == t.tolist()


def test_explicit_rejects_wrong_sum_and_oversized_pool() -> None:
    args = {
        "size_mib": np.array([256, 256]),
        "headroom_mib": np.array([1024]),
        "home": np.array([0, 0]),
        "vdist": np.array([[10, 20], [20, 10]]),
        "pdist": np.array([[10]]),
    }
    with pytest.raises(InputError):
        distribute(
            target_mib=300, **args, policy="explicit", explicit_targets_mib=np.array([100, 100])
        )
    with pytest.raises(InputError):
        distribute(
            target_mib=300, **args, policy="explicit", explicit_targets_mib=np.array([300, 0])
        )


def test_home_first_then_nearest_pnode() -> None:
    pdist = np.array([[10, 20, 30], [20, 10, 20], [30, 20, 10]])
    x = distribute(
        target_mib=1024,
        size_mib=np.array([1024]),
        headroom_mib=np.array([256, 512, 4096]),
        home=np.array([0]),
        vdist=np.array([[10]]),
        pdist=pdist,
        policy="proportional",
    )
    assert x.tolist() == [[256, 512, 256]]


def test_proportional_uses_largest_remainder() -> None:
    pd = np.array([[10]])
    x = distribute(
        target_mib=1000,
        size_mib=np.array([1024, 1024, 1024]),
        headroom_mib=np.array([10000]),
        home=np.zeros(3, np.int64),
        vdist=np.full((3, 3), 20) - 10 * np.eye(3, dtype=np.int64),
        pdist=pd,
        policy="proportional",
    )
    assert x[:, 0].tolist() == [334, 333, 333]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(domain_cases(max_v=8, max_p=8), min_size=1, max_size=6),
    st.sampled_from(DETERMINISTIC),
    st.floats(0, 1),
)
def test_distribute_many_matches_single_domain_calls(
    cases: list[DomainCase], policy: str, frac: float
) -> None:
    p = cases[0].pdist.shape[0]
    cases = [c for c in cases if c.pdist.shape[0] == p] or cases[:1]
    vmax = max(c.size.size for c in cases)
    n = len(cases)
    size = np.zeros((n, vmax), np.int64)
    home = np.zeros((n, vmax), np.int64)
    vd = np.full((n, vmax, vmax), 20, np.int64)
    w = np.zeros((n, vmax), np.int64)
    cur = np.zeros((n, vmax, p), np.int64)
    head = np.stack([c.headroom for c in cases])
    blocks = np.array([c.block for c in cases])
    targets = []
    for i, c in enumerate(cases):
        k = c.size.size
        size[i, :k], home[i, :k], vd[i, :k, :k], w[i, :k] = c.size, c.home, c.vdist, c.weight
        cur[i, :k] = c.current
        targets.append(int(_max_feasible(c) * frac))
    out = distribute_many(
        target_mib=np.array(targets),
        size_mib=size,
        headroom_mib=head,
        home=home,
        vdist=vd,
        pdist=cases[0].pdist,
        policy=policy,  # type: ignore[arg-type]
        current_mib=cur,
        block_mib=blocks,
        vcpu_count=w,
    )
    for i, c in enumerate(cases):
        k = c.size.size
        one = distribute(
            target_mib=targets[i],
            size_mib=c.size,
            headroom_mib=c.headroom,
            home=c.home,
            vdist=c.vdist,
            pdist=cases[0].pdist,
            policy=policy,
            current_mib=c.current,
            block_mib=c.block,  # type: ignore[arg-type]
            vcpu_count=c.weight,
        )
        assert out[i, :k].tolist() == one.tolist()
        assert not out[i, k:].any()


def test_distribute_many_reports_every_infeasible_domain() -> None:
    with pytest.raises(InfeasibleError) as ei:
        distribute_many(
            target_mib=np.array([100, 5000, 6000]),
            size_mib=np.full((3, 1), 4096),
            headroom_mib=np.full((3, 1), 4096),
            home=np.zeros((3, 1), np.int64),
            vdist=np.full((3, 1, 1), 10),
            pdist=np.array([[10]]),
        )
    assert ei.value.domains == (1, 2)
    assert ei.value.max_feasible_mib == 4096


def test_bad_inputs_raise_input_error() -> None:
    with pytest.raises(InputError):
        distribute(
            target_mib=10,
            size_mib=np.array([1.5]),
            headroom_mib=np.array([10]),
            home=np.array([0]),
            vdist=np.array([[10]]),
            pdist=np.array([[10]]),
        )
    with pytest.raises(InputError):
        distribute(
            target_mib=10,
            size_mib=np.array([128]),
            headroom_mib=np.array([10]),
            home=np.array([3]),
            vdist=np.array([[10]]),
            pdist=np.array([[10]]),
        )
    with pytest.raises(InputError):
        distribute(
            target_mib=10,
            size_mib=np.array([128]),
            headroom_mib=np.array([10]),
            home=np.array([0]),
            vdist=np.array([[10]]),
            pdist=np.array([[10]]),
            policy="magic",
        )  # type: ignore[arg-type]
