"""Tests for service.engine.placement (one host): properties against brute force, examples."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.engine.placement import BALANCE_WEIGHT, HostArrays, Placement, scoring, search
from service.engine.placement import host as pl
from tests.engine import rank_reference


def place(
    demand_mib: object,
    vcpus: object,
    vdist: object,
    free_mib: object,
    cpus: object,
    pdist: object,
    load_vcpus: object,
    **kw: int,
) -> Placement:
    """The keyword-only entry point, called positionally to keep the examples short."""
    return pl.place(
        demand_mib=demand_mib,  # type: ignore[arg-type]
        vcpu_count=vcpus,  # type: ignore[arg-type]
        vdist=vdist,  # type: ignore[arg-type]
        free_mib=free_mib,  # type: ignore[arg-type]
        cpus=cpus,  # type: ignore[arg-type]
        pdist=pdist,  # type: ignore[arg-type]
        load_vcpus=load_vcpus,  # type: ignore[arg-type]
        **kw,
    )


def rank_hosts(
    demand_mib: object, vcpus: object, vdist: object, hosts: list[HostArrays], **kw: int
) -> rank_reference.Ranking:
    """The reference oracle (``tests/engine/rank_reference.py``), called positionally."""
    return rank_reference.rank_hosts(
        demand_mib=demand_mib,  # type: ignore[arg-type]
        vcpu_count=vcpus,  # type: ignore[arg-type]
        vdist=vdist,  # type: ignore[arg-type]
        hosts=hosts,
        **kw,
    )


I64 = np.int64


# --------------------------------------------------------------------------- helpers


def snc(sockets: int, per: int, near: int = 12, far: int = 32) -> np.ndarray:
    """SLIT of ``sockets`` sockets with ``per`` sub-NUMA nodes each."""
    n = sockets * per
    d = np.full((n, n), far, dtype=I64)
    for s in range(sockets):
        d[s * per : (s + 1) * per, s * per : (s + 1) * per] = near
    np.fill_diagonal(d, 10)
    return d


def hypercube(bits: int) -> np.ndarray:
    """Glueless 2^bits-socket box: 10 local, +6 per hop."""
    n = 1 << bits
    return np.array([[10 + 6 * (i ^ j).bit_count() for j in range(n)] for i in range(n)], I64)


def brute_distortion(
    dem: list[int], cw: list[int], vd: list[list[int]], pd: list[list[int]], m: list[int]
) -> float:
    """The definition, in plain Python."""
    den = sum(cw) * sum(dem)
    if den == 0:
        return 0.0
    num = 0
    for a in range(len(dem)):
        for u in range(len(dem)):
            num += cw[a] * dem[u] * abs(vd[a][u] - pd[m[a]][m[u]])
    return num / den


def fits(dem: np.ndarray, free: np.ndarray, m: np.ndarray) -> bool:
    load = np.zeros(len(free), dtype=I64)
    np.add.at(load, m, dem)
    return bool(np.all(load <= free))


@st.composite
def slits(draw: st.DrawFn, n: int) -> np.ndarray:
    vals = draw(
        st.lists(st.integers(11, 254), min_size=n * (n - 1) // 2, max_size=n * (n - 1) // 2)
    )
    d = np.full((n, n), 10, dtype=I64)
    iu = np.triu_indices(n, 1)
    d[iu] = vals
    d[(iu[1], iu[0])] = vals
    return d


@st.composite
def instances(draw: st.DrawFn, max_v: int, max_p: int) -> dict[str, np.ndarray]:
    v = draw(st.integers(1, max_v))
    p = draw(st.integers(1, max_p))
    ints = st.integers
    return {
        "demand_mib": np.array(draw(st.lists(ints(0, 4096), min_size=v, max_size=v)), I64),
        "vcpus": np.array(draw(st.lists(ints(0, 8), min_size=v, max_size=v)), I64),
        "vdist": draw(slits(v)),
        "free_mib": np.array(draw(st.lists(ints(0, 16384), min_size=p, max_size=p)), I64),
        "cpus": np.array(draw(st.lists(ints(0, 32), min_size=p, max_size=p)), I64),
        "pdist": draw(slits(p)),
        "load_vcpus": np.array(draw(st.lists(ints(0, 64), min_size=p, max_size=p)), I64),
    }


def call(inst: dict[str, np.ndarray]) -> Placement:
    return place(
        inst["demand_mib"],
        inst["vcpus"],
        inst["vdist"],
        inst["free_mib"],
        inst["cpus"],
        inst["pdist"],
        inst["load_vcpus"],
    )


def check_invariants(inst: dict[str, np.ndarray], r: Placement) -> None:
    v, p = len(inst["demand_mib"]), len(inst["free_mib"])
    assert r.mapping.shape == (v,)
    assert r.mapping.dtype == I64
    assert np.all((r.mapping >= 0) & (r.mapping < p))
    assert r.feasible == (inst["demand_mib"].sum() <= inst["free_mib"].sum())
    if r.feasible:
        assert r.reason == ""
        if not r.spread:
            assert fits(inst["demand_mib"], inst["free_mib"], r.mapping)
    else:
        assert r.reason.startswith("needs ")
    assert r.distortion == pytest.approx(
        brute_distortion(
            inst["demand_mib"].tolist(),
            inst["vcpus"].tolist(),
            inst["vdist"].tolist(),
            inst["pdist"].tolist(),
            r.mapping.tolist(),
        ),
        rel=1e-12,
        abs=1e-12,
    )
    assert r.distortion <= r.score <= r.distortion + BALANCE_WEIGHT + 1e-12


PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- properties


@PROPS
@given(instances(max_v=32, max_p=64))
def test_invariants_on_random_instances(inst: dict[str, np.ndarray]) -> None:
    check_invariants(inst, call(inst))


@settings(max_examples=120, deadline=None)
@given(instances(max_v=4, max_p=4))
def test_exact_search_matches_brute_force(inst: dict[str, np.ndarray]) -> None:
    r = call(inst)
    check_invariants(inst, r)
    dem, cw = inst["demand_mib"].tolist(), inst["vcpus"].tolist()
    vd, pd = inst["vdist"].tolist(), inst["pdist"].tolist()
    p = len(pd)
    fitting = [
        m
        for m in itertools.product(range(p), repeat=len(dem))
        if fits(inst["demand_mib"], inst["free_mib"], np.array(m))
    ]
    if r.feasible:
        # A mapping that fits exists exactly when we do not spread.
        assert r.spread == (not fitting)
    pool = fitting or list(itertools.product(range(p), repeat=len(dem)))
    if fitting or not r.feasible or r.spread:
        best = min(brute_distortion(dem, cw, vd, pd, list(m)) for m in pool)
        if fitting:
            # Balance may only trade away less than its weight of distortion.
            assert r.distortion <= best + BALANCE_WEIGHT + 1e-12
            assert r.distortion >= best - 1e-12


@settings(max_examples=15, deadline=None)
@given(instances(max_v=12, max_p=12), st.data())
def test_local_search_ends_in_a_true_local_optimum(
    inst: dict[str, np.ndarray], data: st.DataObject
) -> None:
    """Move and swap deltas are derived algebraically; recheck them by full evaluation."""
    g = scoring._make_guest(inst["demand_mib"], inst["vcpus"], inst["vdist"])
    h = scoring._make_host(inst["free_mib"], inst["cpus"], inst["pdist"], inst["load_vcpus"])
    v, p = len(inst["demand_mib"]), len(inst["free_mib"])
    start = np.array(data.draw(st.lists(st.integers(0, p - 1), min_size=v, max_size=v)), I64)
    m, _ = search._local_search(g, h, start, 10_000)
    cands = []
    for a in range(v):
        for q in range(p):
            c = m.copy()
            c[a] = q
            cands.append(c)
    for a, b in itertools.combinations(range(v), 2):
        c = m.copy()
        c[a], c[b] = c[b], c[a]
        cands.append(c)
    over, score = search._evaluate(g, h, np.array(cands))
    o0, s0 = search._evaluate(g, h, m[None])
    key = over * scoring._OVERFLOW_KEY + score
    assert key.min() >= o0[0] * scoring._OVERFLOW_KEY + s0[0] - 1e-7


def test_asymmetric_distances_are_priced_exactly() -> None:
    rng = np.random.default_rng(7)
    for _ in range(5):
        v, p = 6, 7
        vd = rng.integers(11, 60, (v, v))
        pd = rng.integers(11, 60, (p, p))
        np.fill_diagonal(vd, 10)
        np.fill_diagonal(pd, 10)
        g = scoring._make_guest(rng.integers(1, 9, v), rng.integers(1, 5, v), vd)
        h = scoring._make_host(np.full(p, 100), np.full(p, 4), pd, np.zeros(p, I64))
        m, _ = search._local_search(g, h, rng.integers(0, p, v), 10_000)
        cands = [np.where(np.arange(v) == a, q, m) for a in range(v) for q in range(p)]
        _, score = search._evaluate(g, h, np.array(cands))
        assert score.min() >= search._evaluate(g, h, m[None])[1][0] - 1e-9


# --------------------------------------------------------------------------- symmetric hosts


@pytest.mark.parametrize(
    "topo",
    [snc(2, 2, near=11, far=21), hypercube(3), snc(2, 4), snc(4, 4), hypercube(4)],
    ids=["4-snc", "8-cube", "8-snc", "16-snc", "16-cube"],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_worst_case_template_on_same_shape_is_undistorted(topo: np.ndarray, seed: int) -> None:
    n = len(topo)
    perm = np.random.default_rng(seed).permutation(n)
    for vdist, pdist in [(topo, topo), (topo, topo[perm][:, perm])]:
        r = place(
            np.full(n, 2048),
            np.full(n, 4),
            vdist,
            np.full(n, 4096),
            np.full(n, 8),
            pdist,
            np.zeros(n, I64),
        )
        assert r.feasible and not r.spread
        assert r.distortion == 0.0
        # Distortion 0 with all-remote virtual distances forces one vnode per pnode.
        assert len(set(r.mapping.tolist())) == n


# --------------------------------------------------------------------------- worked examples


def two_sockets() -> np.ndarray:
    return np.array([[10, 21], [21, 10]], I64)


def test_remote_vnodes_go_one_per_socket() -> None:
    vd = np.array([[10, 21], [21, 10]], I64)
    args = (np.array([4096, 4096]), np.array([4, 4]), vd)
    r = place(*args, np.array([65536, 65536]), np.array([16, 16]), two_sockets(), np.zeros(2, I64))
    assert sorted(r.mapping.tolist()) == [0, 1]
    assert r.distortion == 0.0
    # Both on one socket would be worse, and the engine agrees when forced there.
    forced = place(*args, np.array([65536, 0]), np.array([16, 16]), two_sockets(), np.zeros(2, I64))
    assert forced.mapping.tolist() == [0, 0]
    assert forced.distortion == pytest.approx(5.5)  # (11 + 11) / 4
    assert forced.score > r.score


def test_sixteen_vnode_template_on_one_node_host() -> None:
    vd = snc(4, 4)
    r = place(
        np.full(16, 1024),
        np.full(16, 1),
        vd,
        np.array([32768]),
        np.array([32]),
        np.array([[10]]),
        np.array([0]),
    )
    assert r.feasible and not r.spread
    assert r.mapping.tolist() == [0] * 16


def test_balance_picks_the_emptier_socket() -> None:
    r = place(
        np.array([4096]),
        np.array([4]),
        np.array([[10]]),
        np.array([65536, 65536]),
        np.array([16, 16]),
        two_sockets(),
        np.array([12, 2]),
    )
    assert r.mapping.tolist() == [1]
    r = place(
        np.array([4096]),
        np.array([4]),
        np.array([[10]]),
        np.array([65536, 8192]),
        np.array([16, 16]),
        two_sockets(),
        np.array([0, 0]),
    )
    assert r.mapping.tolist() == [0]


def test_balance_never_beats_distortion() -> None:
    vd = np.array([[10, 21], [21, 10]], I64)
    # Socket 1 is idle, socket 0 busy: balance says "both on 1", distance says "split".
    r = place(
        np.array([1024, 1024]),
        np.array([4, 4]),
        vd,
        np.array([65536, 65536]),
        np.array([16, 16]),
        two_sockets(),
        np.array([64, 0]),
    )
    assert sorted(r.mapping.tolist()) == [0, 1]


def test_capacity_beats_distortion_and_spread_when_nothing_fits() -> None:
    vd = np.array([[10, 21], [21, 10]], I64)
    r = place(
        np.array([6144, 6144]),
        np.array([2, 2]),
        vd,
        np.array([16384, 4096]),
        np.array([16, 16]),
        two_sockets(),
        np.zeros(2, I64),
    )
    assert r.mapping.tolist() == [0, 0] and not r.spread
    r = place(
        np.array([8192]),
        np.array([2]),
        np.array([[10]]),
        np.array([6144, 6144]),
        np.array([16, 16]),
        two_sockets(),
        np.zeros(2, I64),
    )
    assert r.feasible and r.spread and r.reason == ""


def test_infeasible_reason() -> None:
    r = place(
        np.full(3, 32768),
        np.full(3, 4),
        snc(1, 3),
        np.full(2, 32768),
        np.full(2, 8),
        two_sockets(),
        np.zeros(2, I64),
    )
    assert not r.feasible
    assert r.reason == "needs 98304 MiB, host has 65536 MiB free"


def test_heuristic_on_32_vnodes_64_pnodes_is_fast_and_valid() -> None:
    rng = np.random.default_rng(3)
    inst = {
        "demand_mib": np.full(32, 4096, I64),
        "vcpus": np.full(32, 2, I64),
        "vdist": snc(4, 8),
        "free_mib": rng.integers(2048, 16384, 64),
        "cpus": np.full(64, 16, I64),
        "pdist": snc(8, 8),
        "load_vcpus": rng.integers(0, 16, 64),
    }
    call(inst)  # warm-up
    t0 = time.perf_counter()
    r = call(inst)
    assert time.perf_counter() - t0 < 1.0
    check_invariants(inst, r)
    assert r.feasible and not r.spread


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        place(
            np.array([1, 2]),
            np.array([1]),
            snc(1, 2),
            np.array([4]),
            np.array([1]),
            np.array([[10]]),
            np.array([0]),
        )
    with pytest.raises(ValueError):
        place(
            np.array([], I64),
            np.array([], I64),
            np.zeros((0, 0), I64),
            np.array([4]),
            np.array([1]),
            np.array([[10]]),
            np.array([0]),
        )
    with pytest.raises(ValueError):
        place(
            np.array([-1]),
            np.array([1]),
            np.array([[10]]),
            np.array([4]),
            np.array([1]),
            np.array([[10]]),
            np.array([0]),
        )


# --------------------------------------------------------------------------- ranking


def random_hosts(rng: np.random.Generator, n: int, shapes: list[np.ndarray]) -> list[HostArrays]:
    out = []
    for i in range(n):
        pd = shapes[i % len(shapes)]
        p = len(pd)
        out.append(
            HostArrays(
                free_mib=rng.integers(0, 40000, p),
                cpus=np.full(p, 16, I64),
                pdist=pd,
                load_vcpus=rng.integers(0, 24, p),
            )
        )
    return out


def test_rank_matches_place_on_small_search_spaces() -> None:
    rng = np.random.default_rng(11)
    hosts = random_hosts(rng, 60, [two_sockets(), snc(2, 2, 11, 21), snc(1, 3)])
    dem, cw, vd = np.array([8192, 8192, 4096]), np.array([4, 4, 2]), snc(1, 3, near=21)
    ranking = rank_hosts(dem, cw, vd, hosts, pool_size=8)
    assert sorted(ranking.order.tolist()) == list(range(60))
    for host, got in zip(hosts, ranking.placements, strict=True):
        want = place(dem, cw, vd, host.free_mib, host.cpus, host.pdist, host.load_vcpus)
        assert (got.feasible, got.spread) == (want.feasible, want.spread)
        assert got.distortion == pytest.approx(want.distortion, abs=BALANCE_WEIGHT)
        assert got.score == pytest.approx(want.score, abs=BALANCE_WEIGHT)
    keys = [(not p.feasible, p.spread, p.score) for p in ranking.placements]
    assert [keys[i] for i in ranking.order] == sorted(keys)


def test_rank_heuristic_groups_are_valid() -> None:
    rng = np.random.default_rng(5)
    hosts = random_hosts(rng, 300, [snc(4, 4), snc(2, 4)])
    dem, cw, vd = np.full(8, 4096, I64), np.full(8, 2, I64), snc(2, 4)
    ranking = rank_hosts(dem, cw, vd, hosts)
    for host, got in zip(hosts, ranking.placements, strict=True):
        inst = {
            "demand_mib": dem,
            "vcpus": cw,
            "vdist": vd,
            "free_mib": host.free_mib,
            "cpus": host.cpus,
            "pdist": host.pdist,
            "load_vcpus": host.load_vcpus,
        }
        check_invariants(inst, got)
    best = ranking.placements[int(ranking.order[0])]
    assert best.feasible and not best.spread and best.distortion == 0.0
