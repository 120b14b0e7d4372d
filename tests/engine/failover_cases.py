"""Hypothesis strategies for small clusters the failover oracle can check, and their conversion
to the planner's inputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from service.engine.failover import FailoverHosts, GuestShape, ProtectedDomains, protected_domains
from tests.engine.failover_oracle import ODomain, OHost, as_arrays

SIZES = (0, 256, 512, 768, 1024, 1536, 2048, 3072)


@dataclass(frozen=True)
class Case:
    hosts: tuple[OHost, ...]
    domains: tuple[ODomain, ...]
    spread: bool

    def inputs(self) -> tuple[FailoverHosts, ProtectedDomains]:
        return engine_inputs(self.hosts, self.domains)


def engine_inputs(
    hosts: tuple[OHost, ...], domains: tuple[ODomain, ...]
) -> tuple[FailoverHosts, ProtectedDomains]:
    free, sq = as_arrays(hosts)
    keys: dict[tuple[tuple[int, ...], ...], int] = {}
    shapes: list[np.ndarray] = []
    shape = []
    for h in hosts:
        shape.append(keys.setdefault(h.pdist, len(keys)))
        if len(shapes) < len(keys):
            shapes.append(np.array(h.pdist, dtype=np.int64))
    fh = FailoverHosts(
        free_mib=free,
        squeezable_mib=sq,
        eligible=np.array([h.eligible for h in hosts], dtype=bool),
        shape=np.array(shape, dtype=np.int64),
        shapes=tuple(shapes),
    )
    guests = [
        GuestShape(
            restart_mib=np.array(d.restart, dtype=np.int64),
            vcpu_count=np.array(d.vcpus, dtype=np.int64),
            vdist=np.array(d.vdist, dtype=np.int64),
            max_distortion=d.limit,
        )
        for d in domains
    ]
    return fh, protected_domains(host=[d.host for d in domains], guests=guests)


@st.composite
def slit(draw: st.DrawFn, n: int) -> tuple[tuple[int, ...], ...]:
    far = draw(st.sampled_from((12, 16, 21, 32)))
    groups = draw(st.integers(1, n))
    return tuple(
        tuple(10 if i == j else (12 if i % groups == j % groups else far) for j in range(n))
        for i in range(n)
    )


@st.composite
def clusters(
    draw: st.DrawFn, max_hosts: int = 4, max_domains: int = 5, max_v: int = 3, max_p: int = 3
) -> Case:
    n_shapes = draw(st.integers(1, 2))
    topo = [draw(slit(draw(st.integers(1, max_p)))) for _ in range(n_shapes)]
    n_hosts = draw(st.integers(2, max_hosts))
    hosts = []
    for _ in range(n_hosts):
        pd = topo[draw(st.integers(0, n_shapes - 1))]
        p = len(pd)
        free = tuple(draw(st.sampled_from((*SIZES[:-1], 4096))) for _ in range(p))
        squeeze = tuple(draw(st.sampled_from((0, 0, 256, 1024))) for _ in range(p))
        hosts.append(OHost(free, squeeze, pd, draw(st.booleans()) or draw(st.booleans())))
    domains = []
    for _ in range(draw(st.integers(0, max_domains))):
        v = draw(st.integers(1, max_v))
        restart = tuple(draw(st.sampled_from(SIZES)) for _ in range(v))
        vcpus = tuple(draw(st.integers(0, 2)) for _ in range(v))
        limited = draw(st.integers(0, 3)) == 0
        limit = float(draw(st.sampled_from((0.0, 1.0, 2.5, 5.0, 11.0)))) if limited else None
        domains.append(
            ODomain(draw(st.integers(0, n_hosts - 1)), restart, vcpus, draw(slit(v)), limit)
        )
    return Case(tuple(hosts), tuple(domains), draw(st.integers(0, 4)) == 0)
