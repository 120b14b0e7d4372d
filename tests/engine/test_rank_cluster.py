"""rank_cluster (one vectorized pass per host topology) against place() host by host."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.engine.placement import (
    BALANCE_WEIGHT,
    SEARCHES,
    SHORTLISTS,
    ClusterArrays,
    HostArrays,
    cluster_arrays,
    place,
    rank_cluster,
)
from tests.engine.test_place import check_invariants, slits, snc

I64 = np.int64


def _place(dem: np.ndarray, cw: np.ndarray, vd: np.ndarray, host: HostArrays) -> object:
    return place(
        demand_mib=dem,
        vcpu_count=cw,
        vdist=vd,
        free_mib=host.free_mib,
        cpus=host.cpus,
        pdist=host.pdist,
        load_vcpus=host.load_vcpus,
    )


@st.composite
def small_clusters(
    draw: st.DrawFn,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[HostArrays]]:
    """Guests and hosts small enough that every mapping of every shape is in the shortlist
    (P ** V <= 81 < the pool size), so the fast ranking must equal place() exactly."""
    v = draw(st.integers(1, 4))
    ints = st.integers
    dem = np.array(draw(st.lists(ints(0, 4096), min_size=v, max_size=v)), I64)
    cw = np.array(draw(st.lists(ints(0, 8), min_size=v, max_size=v)), I64)
    vd = draw(slits(v))
    shapes = [draw(slits(draw(ints(1, 3)))) for _ in range(draw(ints(1, 3)))]
    hosts = []
    for _ in range(draw(ints(1, 12))):
        pd = shapes[draw(ints(0, len(shapes) - 1))]
        p = len(pd)
        hosts.append(
            HostArrays(
                free_mib=np.array(draw(st.lists(ints(0, 8192), min_size=p, max_size=p)), I64),
                cpus=np.array(draw(st.lists(ints(0, 16), min_size=p, max_size=p)), I64),
                pdist=pd,
                load_vcpus=np.array(draw(st.lists(ints(0, 32), min_size=p, max_size=p)), I64),
            )
        )
    return dem, cw, vd, hosts


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_clusters(), st.integers(1, 12))
def test_fast_ranking_equals_place_on_small_clusters(
    case: tuple[np.ndarray, np.ndarray, np.ndarray, list[HostArrays]], limit: int
) -> None:
    dem, cw, vd, hosts = case
    ranking = rank_cluster(
        demand_mib=dem, vcpu_count=cw, vdist=vd, cluster=cluster_arrays(hosts=hosts), limit=limit
    )
    wants = [_place(dem, cw, vd, h) for h in hosts]
    for i, want in enumerate(wants):
        got = ranking.placement(i)
        assert (got.feasible, got.spread, got.reason) == (want.feasible, want.spread, want.reason)
        assert got.distortion == pytest.approx(want.distortion, abs=1e-9)
        assert got.score == pytest.approx(want.score, abs=1e-9)
    keys = sorted((not w.feasible, w.spread, w.score, i) for i, w in enumerate(wants))
    want_order = [k[3] for k in keys][: min(limit, len(hosts))]
    got_keys = [k for i in ranking.order.tolist() for k in keys_of(wants[i])]
    assert len(ranking.order) == len(want_order)
    # Same hosts in the same order, up to hosts whose keys tie within float rounding.
    assert got_keys == pytest.approx([k for i in want_order for k in keys_of(wants[i])], abs=1e-9)


def keys_of(p: object) -> tuple[float, float, float]:
    assert hasattr(p, "feasible") and hasattr(p, "spread") and hasattr(p, "score")
    return (float(not p.feasible), float(p.spread), float(p.score))


def busy_hosts(rng: np.random.Generator, n: int) -> list[HostArrays]:
    """Real shapes (1 node, 2 sockets, EPYC NPS4 2-socket, 4-socket SNC4), partly full."""
    shapes = [np.array([[10]], I64), snc(2, 1, far=21), snc(2, 4, near=12), snc(4, 4, near=12)]
    out = []
    for i in range(n):
        pd = shapes[i % 4]
        p = len(pd)
        free = rng.integers(0, 65536, p)
        free[rng.random(p) < 0.3] = 0
        out.append(
            HostArrays(
                free_mib=free, cpus=np.full(p, 16, I64), pdist=pd, load_vcpus=rng.integers(0, 40, p)
            )
        )
    return out


def test_heuristic_shapes_give_valid_placements_and_a_sound_order() -> None:
    rng = np.random.default_rng(3)
    hosts = busy_hosts(rng, 400)
    dem, cw, vd = np.full(8, 8192, I64), np.full(8, 4, I64), snc(2, 4)
    ranking = rank_cluster(
        demand_mib=dem, vcpu_count=cw, vdist=vd, cluster=cluster_arrays(hosts=hosts), limit=25
    )
    for i, host in enumerate(hosts):
        inst = {
            "demand_mib": dem,
            "vcpus": cw,
            "vdist": vd,
            "free_mib": host.free_mib,
            "cpus": host.cpus,
            "pdist": host.pdist,
            "load_vcpus": host.load_vcpus,
        }
        check_invariants(inst, ranking.placement(i))
    top = [ranking.placement(int(i)) for i in ranking.order]
    keys = [(not p.feasible, p.spread, p.score) for p in top]
    assert keys == sorted(keys)
    every = sorted(
        (not ranking.feasible[i], bool(ranking.spread[i]), float(ranking.score[i]))
        for i in range(len(hosts))
    )
    assert keys == every[:25]
    # The best host is as good as place() makes it on that host.
    best = int(ranking.order[0])
    want = _place(dem, cw, vd, hosts[best])
    assert top[0].feasible and not top[0].spread
    assert top[0].score <= want.score + BALANCE_WEIGHT


def test_fast_ranking_finds_a_host_the_shortlist_misses() -> None:
    """Every pnode but the last two of a 16-node host is full: no capacity-blind mapping fits,
    so the host needs its own capacity-aware search, and must still be found feasible."""
    pd = snc(4, 4)
    free = np.zeros(16, I64)
    free[14:] = 16384
    hosts = [
        HostArrays(free_mib=free, cpus=np.full(16, 8, I64), pdist=pd, load_vcpus=np.zeros(16, I64))
    ]
    dem, cw = np.full(4, 8192, I64), np.full(4, 2, I64)
    ranking = rank_cluster(
        demand_mib=dem, vcpu_count=cw, vdist=snc(2, 2), cluster=cluster_arrays(hosts=hosts)
    )
    got = ranking.placement(0)
    assert got.feasible and not got.spread
    assert set(got.mapping.tolist()) == {14, 15}


def test_ties_go_to_the_earlier_host_and_limit_bounds_the_order() -> None:
    pd = snc(2, 1, far=21)
    same = HostArrays(
        free_mib=np.full(2, 65536, I64),
        cpus=np.full(2, 8, I64),
        pdist=pd,
        load_vcpus=np.zeros(2, I64),
    )
    hosts = [same] * 30
    ranking = rank_cluster(
        demand_mib=np.array([4096, 4096], I64),
        vcpu_count=np.array([2, 2], I64),
        vdist=pd,
        cluster=cluster_arrays(hosts=hosts),
        limit=5,
    )
    assert ranking.order.tolist() == [0, 1, 2, 3, 4]


def test_infeasible_hosts_say_why_and_come_last() -> None:
    pd = snc(2, 1, far=21)
    hosts = [
        HostArrays(
            free_mib=np.array([1024, 0], I64),
            cpus=np.full(2, 8, I64),
            pdist=pd,
            load_vcpus=np.zeros(2, I64),
        ),
        HostArrays(
            free_mib=np.array([8192, 8192], I64),
            cpus=np.full(2, 8, I64),
            pdist=pd,
            load_vcpus=np.zeros(2, I64),
        ),
    ]
    ranking = rank_cluster(
        demand_mib=np.array([4096, 4096], I64),
        vcpu_count=np.array([2, 2], I64),
        vdist=pd,
        cluster=cluster_arrays(hosts=hosts),
    )
    assert ranking.order.tolist() == [1, 0]
    assert ranking.placement(0).reason == "needs 8192 MiB, host has 1024 MiB free"


def test_cluster_arrays_are_checked() -> None:
    pd = np.array([[10]], I64)
    ok = {
        "free_mib": np.zeros((2, 1), I64),
        "cpus": np.ones((2, 1), I64),
        "load_vcpus": np.zeros((2, 1), I64),
        "shape": np.zeros(2, I64),
        "shapes": (pd,),
    }
    ClusterArrays(**ok)
    with pytest.raises(ValueError, match="free_mib"):
        ClusterArrays(**{**ok, "free_mib": np.zeros((3, 1), I64)})
    with pytest.raises(ValueError, match="negative"):
        ClusterArrays(**{**ok, "free_mib": np.full((2, 1), -1, I64)})
    with pytest.raises(ValueError, match="shape indices"):
        ClusterArrays(**{**ok, "shape": np.array([0, 1], I64)})


def test_kept_searches_give_the_answers_of_fresh_ones() -> None:
    """A second ranking of the same flavour reuses the shortlists and the in-depth searches of
    unchanged hosts, and answers exactly what a ranking with nothing kept answers, also after
    the best host's state changed (its state is part of the key)."""
    rng = np.random.default_rng(11)
    hosts = busy_hosts(rng, 60)
    guest = {"demand_mib": np.full(8, 4096, I64), "vcpu_count": np.full(8, 2, I64)}
    guest["vdist"] = snc(2, 4)

    def ranked(cluster: ClusterArrays) -> tuple[list[int], np.ndarray, np.ndarray]:
        r = rank_cluster(**guest, cluster=cluster, limit=10)  # type: ignore[arg-type]
        return r.order.tolist(), r.mapping.copy(), r.score.copy()

    SHORTLISTS.clear()
    SEARCHES.clear()
    cluster = cluster_arrays(hosts=hosts)
    first = ranked(cluster)
    searched = SEARCHES.misses
    assert searched > 0 and SHORTLISTS.misses > 0
    again = ranked(cluster)
    assert SEARCHES.misses == searched and SEARCHES.hits == searched and SHORTLISTS.hits > 0
    busy = cluster.free_mib.copy()
    busy[first[0][0]] //= 2  # the best host fills up
    changed = ClusterArrays(
        free_mib=busy,
        cpus=cluster.cpus,
        load_vcpus=cluster.load_vcpus,
        shape=cluster.shape,
        shapes=cluster.shapes,
    )
    after = ranked(changed)
    SHORTLISTS.clear()
    SEARCHES.clear()
    for kept, fresh in ((again, first), (after, ranked(changed))):
        assert kept[0] == fresh[0]
        assert np.array_equal(kept[1], fresh[1]) and np.array_equal(kept[2], fresh[2])
