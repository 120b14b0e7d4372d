from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings

from service.engine import distortion, distortion_many, remote_fraction
from tests.engine.gen import DomainCase, domain_cases


def _slow_distortion(
    x: np.ndarray, vd: np.ndarray, pd: np.ndarray, home: np.ndarray, cw: np.ndarray
) -> float:
    num = 0.0
    for a in range(vd.shape[0]):
        for u in range(vd.shape[0]):
            for p in range(pd.shape[0]):
                num += cw[a] * x[u, p] * abs(int(vd[a, u]) - int(pd[home[a], p]))
    den = float(cw.sum()) * float(x.sum())
    return num / den if den else 0.0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(domain_cases(max_v=6, max_p=6))
def test_distortion_matches_its_definition(c: DomainCase) -> None:
    x = c.current
    got = distortion(backing_mib=x, vdist=c.vdist, pdist=c.pdist, home=c.home, vcpu_count=c.weight)
    assert abs(got - _slow_distortion(x, c.vdist, c.pdist, c.home, c.weight)) < 1e-9
    many = distortion_many(
        backing_mib=x[None],
        vdist=c.vdist[None],
        pdist=c.pdist,
        home=c.home[None],
        vcpu_count=c.weight[None],
    )
    assert abs(many[0] - got) < 1e-12


def test_perfect_match_has_zero_distortion_and_empty_is_zero() -> None:
    d = np.array([[10, 20], [20, 10]])
    x = np.array([[512, 0], [0, 512]])
    assert (
        distortion(
            backing_mib=x, vdist=d, pdist=d, home=np.array([0, 1]), vcpu_count=np.array([1, 1])
        )
        == 0.0
    )
    assert (
        distortion(
            backing_mib=np.zeros((2, 2), np.int64),
            vdist=d,
            pdist=d,
            home=np.array([0, 1]),
            vcpu_count=np.array([1, 1]),
        )
        == 0
    )
    # All memory on the wrong pnode: every access is off by 10.
    assert (
        distortion(
            backing_mib=x[:, ::-1],
            vdist=d,
            pdist=d,
            home=np.array([0, 1]),
            vcpu_count=np.array([1, 1]),
        )
        == 10.0
    )


def test_remote_fraction() -> None:
    x = np.array([[300, 100], [0, 600]])
    assert remote_fraction(backing_mib=x, home=np.array([0, 1])) == 0.1
    assert remote_fraction(backing_mib=np.zeros((2, 2), np.int64), home=np.array([0, 1])) == 0.0
