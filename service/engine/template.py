"""The cluster's worst-case virtual topology (the seed thread's proposal).

A guest reads SRAT/SLIT once at boot: it can be told it sits on a bigger topology than the host
it runs on -- pools the host cannot back well are simply left empty, or several pools collapse
onto one pnode -- but it can never gain nodes after boot.  So the template copies the host with
the MOST nodes; ties go to the host with the most distinct distance classes (richer belief to
match against), then to the largest maximum distance (the guest is warned about the worst
remote cost), then to the lowest index (deterministic).  Every smaller host is represented by
emptying or collapsing pools, which is what ``distribute(..., policy="faithful")`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .errors import Issue, TopologyError
from .topology import MAX_VNODES, validate_slit

__all__ = ["WorstCaseTemplate", "worst_case_template"]


@dataclass(frozen=True, eq=False, kw_only=True)
class WorstCaseTemplate:
    vnodes: int
    distances: NDArray[np.int64]  # (K, K)
    source_host_index: int
    classes: tuple[int, ...]  # distinct distances, ascending (10 first)


def worst_case_template(host_distance_matrices: Sequence[object]) -> WorstCaseTemplate:
    """Pick the template host; raise ``TopologyError`` listing every invalid matrix."""
    if len(host_distance_matrices) == 0:
        raise TopologyError((Issue(loc=("hosts",), msg="need at least one host"),))
    issues: list[Issue] = []
    for i, m in enumerate(host_distance_matrices):
        issues.extend(validate_slit(m, None, ("hosts", i, "distances")))
    if issues:
        raise TopologyError(tuple(issues))
    mats = [np.asarray(m, dtype=np.int64) for m in host_distance_matrices]
    keys = [(m.shape[0], np.unique(m).size, int(m.max()), -i) for i, m in enumerate(mats)]
    best = max(range(len(mats)), key=lambda i: keys[i])
    dist = mats[best]
    if dist.shape[0] > MAX_VNODES:
        raise TopologyError(
            (
                Issue(
                    loc=("hosts", best, "distances"),
                    msg=f"{dist.shape[0]} nodes exceed the {MAX_VNODES}-vnode limit of a guest",
                ),
            )
        )
    out = dist.copy()
    out.setflags(write=False)
    return WorstCaseTemplate(
        vnodes=int(dist.shape[0]),
        distances=out,
        source_host_index=int(best),
        classes=tuple(int(c) for c in np.unique(dist)),
    )
