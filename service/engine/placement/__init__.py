"""Placement of a domain's vnodes on pnodes: one host (``place``) or a whole cluster
(``rank_cluster``).

- ``scoring``: the guest's and a host's arrays and the pieces of the lexicographic score;
- ``search``: exact and heuristic search for one host's best mapping;
- ``host``: ``place`` and the ``Placement`` it returns;
- ``cluster``: ``ClusterArrays`` and ``rank_cluster``, one vectorized pass per host topology.

Underscored names are shared between these modules only; callers use the names below.
"""

from service.engine.placement.cluster import (
    DEFAULT_POOL_SIZE,
    SEARCHES,
    SHORTLISTS,
    ClusterArrays,
    ClusterRanking,
    cluster_arrays,
    forget_kept_searches,
    rank_cluster,
)
from service.engine.placement.host import HostArrays, Placement, place
from service.engine.placement.scoring import BALANCE_WEIGHT
from service.engine.placement.search import DEFAULT_BUDGET_EVALS, EXACT_LIMIT

__all__ = [
    "BALANCE_WEIGHT",
    "DEFAULT_BUDGET_EVALS",
    "DEFAULT_POOL_SIZE",
    "EXACT_LIMIT",
    "SEARCHES",
    "SHORTLISTS",
    "ClusterArrays",
    "ClusterRanking",
    "HostArrays",
    "Placement",
    "cluster_arrays",
    "forget_kept_searches",
    "place",
    "rank_cluster",
]
