"""Failover planning that knows NUMA (issue 26; model, algorithms and proofs: docs/failover.md).

A *scenario* is a set F of r hosts failing at once. Every protected domain of a host in F must
restart on a surviving host that may receive restarts (the caller's ``eligible``: connected,
active), each vnode on one pnode (unless ``allow_spread``: then only the host's total counts),
within its distortion limit (an input: no policy bounds distortion today), at its restart
demand (``restart_mib``: the vnode targets it ran with). Survivors may be squeezed down to their
domains' dynamic_min (``squeezable_mib`` per pnode). The restarts of one scenario share the
survivors' capacity, and no domain is placed twice.

``tolerated(r)``: every scenario of r failures restarts every protected domain; it is never
claimed without proof. ``exact``: every scenario was enumerated and each answer proven (a plan
found, or a complete search that finished). Beyond ``max_scenarios`` scenarios, bounds decide
(``exact`` false): the totals condition (a scenario certainly lacks memory), the slot bound and
the reservation bound (each sufficient: when it says tolerated, it is). ``max_host_failures``:
the largest r proven tolerated, by galloping and bisection (tolerance is monotone in r).
``check_change`` re-checks a kept plan after one change, touching only the scenarios it affects.
"""

from service.engine.failover.admission import (
    Admission,
    DomainChange,
    FailoverState,
    HostChange,
    check_change,
)
from service.engine.failover.inputs import (
    FailoverHosts,
    GuestShape,
    ProtectedDomains,
    protected_domains,
)
from service.engine.failover.levels import DEFAULT_MAX_SCENARIOS
from service.engine.failover.planner import FailoverPlan, Worst, plan_failover
from service.engine.failover.reasons import Unplaced
from service.engine.failover.restarts import Restarts

__all__ = [
    "DEFAULT_MAX_SCENARIOS",
    "Admission",
    "DomainChange",
    "FailoverHosts",
    "FailoverPlan",
    "FailoverState",
    "GuestShape",
    "HostChange",
    "ProtectedDomains",
    "Restarts",
    "Unplaced",
    "Worst",
    "check_change",
    "plan_failover",
    "protected_domains",
]
