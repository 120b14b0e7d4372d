"""Failover planning that knows NUMA: can every protected domain restart, each vnode on one
pnode and within its distortion limit, after any r host failures? See ``plan`` and
docs/failover.md."""

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
