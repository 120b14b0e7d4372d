"""Hypothesis strategies for random valid topologies and host states."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from numpy.typing import NDArray

I64 = NDArray[np.int64]


def slit(rng: np.random.Generator, n: int) -> I64:
    d = rng.integers(11, 255, size=(n, n)).astype(np.int64)
    if rng.random() < 0.5:  # symmetric, like most real SLITs
        d = np.minimum(d, d.T)
    np.fill_diagonal(d, 10)
    return d


@dataclass
class DomainCase:
    size: I64
    headroom: I64
    home: I64
    vdist: I64
    pdist: I64
    weight: I64
    current: I64
    block: int


@st.composite
def domain_cases(draw: st.DrawFn, max_v: int = 32, max_p: int = 64) -> DomainCase:
    seed = draw(st.integers(0, 2**32 - 1))
    v = draw(st.integers(1, max_v))
    p = draw(st.integers(1, max_p))
    rng = np.random.default_rng(seed)
    block = int(2 ** rng.integers(1, 9))
    size = rng.integers(1, 20, size=v).astype(np.int64) * block
    if rng.random() < 0.3:
        size[rng.integers(0, v)] *= 7  # asymmetric sizes
    kind = rng.integers(0, 4)
    if kind == 0:  # roomy
        headroom = rng.integers(0, int(size.sum()) + 1, size=p)
    elif kind == 1:  # some pnodes full
        headroom = rng.integers(0, int(size.sum()) // max(p, 1) + 2, size=p)
        headroom[rng.random(p) < 0.5] = 0
    elif kind == 2:  # zero headroom everywhere
        headroom = np.zeros(p, dtype=np.int64)
    else:  # negative headroom (others overcommitted) on some pnodes
        headroom = rng.integers(-500, 3000, size=p)
    home = rng.integers(0, p, size=v).astype(np.int64)
    weight = rng.integers(1, 9, size=v).astype(np.int64)
    current = np.zeros((v, p), dtype=np.int64)
    if rng.random() < 0.7:
        cur_t = (rng.random(v) * (size + 1)).astype(np.int64)
        current[np.arange(v), home] = cur_t
        if p > 1 and rng.random() < 0.5:  # some vnodes spread over two pnodes
            other = rng.integers(0, p, size=v)
            half = current[np.arange(v), home] // 2
            current[np.arange(v), home] -= half
            current[np.arange(v), other] += half
    return DomainCase(
        size=size,
        headroom=headroom.astype(np.int64),
        home=home,
        vdist=slit(rng, v),
        pdist=slit(rng, p),
        weight=weight,
        current=current,
        block=block,
    )
