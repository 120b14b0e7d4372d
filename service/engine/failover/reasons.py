"""Why a domain of a failure scenario could not be restarted, in words a person can act on.

Figures are MiB, as everywhere in the API, and count squeezing: "can free" means free now plus
what squeezing every domain of the host down to its dynamic_min gives back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.engine.failover.fit import Fit, search_fit
from service.engine.failover.pack import alive_mask, fits_alone
from service.engine.failover.problem import Problem

IntArray = NDArray[np.int64]


@dataclass(frozen=True, kw_only=True)
class Unplaced:
    """A domain of a failure scenario left without a restart, and why."""

    domain: int
    reason: str


def _mib(x: int) -> str:
    return f"{x} MiB"


def _largest_pnode(prob: Problem, alive: NDArray[np.bool_]) -> int:
    real = prob.hosts.free_mib + prob.hosts.squeezable_mib
    return int(real[alive].max(initial=0))


def _fits_without_limit(prob: Problem, d: int, hosts: IntArray) -> bool:
    guest = prob.guests[int(prob.dom_guest[d])]
    for h in hosts.tolist():
        nb = int(prob.n_bins[h])
        ans, _, _ = search_fit(guest.items, prob.full[h, :nb], budget=prob.fit_budget)
        if ans == Fit.FIT:
            return True
    return False


def _alone_nowhere(prob: Problem, d: int, alive: NDArray[np.bool_]) -> str:
    """The first of: a vnode larger than any pnode; more MiB than any host; a distortion limit
    that no topology or no roomy enough host meets; vnodes that do not pack."""
    g = int(prob.dom_guest[d])
    guest = prob.guests[g]
    dem = guest.shape.restart_mib
    hosts = np.flatnonzero(alive)
    most = int(prob.full[hosts].sum(axis=1).max(initial=0))
    if guest.total > most:
        return (
            f"needs {_mib(guest.total)} in all; the most an eligible survivor can free is "
            f"{_mib(most)}"
        )
    limit = guest.limit
    if limit is not None:
        shapes = np.unique(prob.shape[hosts]).tolist()
        if all(prob.home_ok(g, int(s))[0] == Fit.NOFIT for s in shapes):
            return (
                f"no surviving host's topology has a mapping within its distortion limit {limit:g}"
            )
    big = _largest_pnode(prob, alive)
    v = int(np.argmax(dem))
    if not prob.spread and int(dem[v]) > big:
        return (
            f"vnode {v} needs {_mib(int(dem[v]))} on one pnode; the largest pnode an eligible "
            f"survivor can free has {_mib(big)}"
        )
    if limit is not None and not prob.spread and _fits_without_limit(prob, d, hosts):
        return (
            f"it fits only with a distortion beyond its limit {limit:g}: no surviving host has "
            "room for a mapping within it"
        )
    sizes = ", ".join(str(int(x)) for x in dem.tolist())
    return (
        f"its vnodes ({sizes} MiB) cannot each be placed on one pnode of any eligible survivor "
        f"(the largest pnode one can free has {_mib(big)})"
    )


def reason(prob: Problem, failed: tuple[int, ...], d: int, placed_mib: int, proven: bool) -> str:
    """Why domain ``d`` is left out of the plan for the failure of ``failed``."""
    alive = alive_mask(prob, failed)
    if not alive.any():
        return "no eligible survivor: every host that may receive restarts has failed"
    hosts, unknown = fits_alone(prob, d, alive)
    if hosts:
        why = (
            f"{len(hosts)} eligible survivor(s) could take it alone, but the other restarts of "
            f"this scenario ({_mib(placed_mib)}) fill them"
        )
    elif unknown:
        why = "no eligible survivor was found to fit it (the search gave up before proving none)"
    else:
        why = _alone_nowhere(prob, d, alive)
    if not proven:
        why += " (search budget exhausted: not proven impossible)"
    return why
