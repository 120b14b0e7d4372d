"""Placement of a domain's vnodes on one host's pnodes: ``place`` and what it returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from service.engine.placement.scoring import (
    BALANCE_WEIGHT,
    IntArray,
    _exact_distortion,
    _Guest,
    _Host,
    _host_terms,
    _make_guest,
    _make_host,
)
from service.engine.placement.search import DEFAULT_BUDGET_EVALS, _search


@dataclass(frozen=True, kw_only=True)
class Placement:
    """Where a domain's vnodes are homed on one host and how good that is.

    ``mapping`` is meaningful even when ``spread`` or infeasible: it is the best home per vnode
    found, so callers can explain or spread from it.
    """

    feasible: bool
    mapping: IntArray
    distortion: float
    score: float
    spread: bool
    reason: str


@dataclass(frozen=True, kw_only=True)
class HostArrays:
    """One host's state as the placement needs it (all per pnode, memory in MiB)."""

    free_mib: IntArray
    cpus: IntArray
    pdist: IntArray
    load_vcpus: IntArray


# --------------------------------------------------------------------------- results


def _fmt_mib(mib: int) -> str:
    """Always MiB: the unit of every figure in the API, so a reason can be compared to them."""
    return f"{mib} MiB"


def _finish(g: _Guest, h: _Host, mapping: IntArray) -> Placement:
    """Turn a chosen mapping into a Placement with exactly recomputed figures."""
    need = int(g.demand_int.sum())
    have = int(h.free.sum())
    if h.free.shape[0] == 0:
        return Placement(
            feasible=False,
            mapping=mapping,
            distortion=0.0,
            score=0.0,
            spread=False,
            reason="host has no NUMA nodes",
        )
    over, bal = _host_terms(g, mapping[None], h.free[None], h.cpus[None], h.load[None])
    distortion = _exact_distortion(g, h, mapping)
    score = distortion + BALANCE_WEIGHT * float(bal[0, 0])
    if need > have:
        reason = f"needs {_fmt_mib(need)}, host has {_fmt_mib(have)} free"
        return Placement(
            feasible=False,
            mapping=mapping,
            distortion=distortion,
            score=score,
            spread=False,
            reason=reason,
        )
    return Placement(
        feasible=True,
        mapping=mapping,
        distortion=distortion,
        score=score,
        spread=bool(over[0, 0] > 0),
        reason="",
    )


def place(
    *,
    demand_mib: ArrayLike,
    vcpu_count: ArrayLike,
    vdist: ArrayLike,
    free_mib: ArrayLike,
    cpus: ArrayLike,
    pdist: ArrayLike,
    load_vcpus: ArrayLike,
    budget_evals: int = DEFAULT_BUDGET_EVALS,
) -> Placement:
    """Home each vnode of a new domain on a pnode of one host.

    Capacity first, distortion second, balance last. When no mapping fits every vnode on its
    home pnode but the host has enough free memory in total, the best mapping is still returned
    with ``spread=True``: memory will be spread to other pnodes by ``distribute``.
    """
    g = _make_guest(demand_mib, vcpu_count, vdist)
    h = _make_host(free_mib, cpus, pdist, load_vcpus)
    v = g.demand.shape[0]
    if h.free.shape[0] == 0:
        return Placement(
            feasible=False,
            mapping=np.zeros(v, dtype=np.int64),
            distortion=0.0,
            score=0.0,
            spread=False,
            reason="host has no NUMA nodes",
        )
    return _finish(g, h, _search(g, h, budget_evals))
