"""Pure numpy engine: no SQLAlchemy, no FastAPI, no I/O."""

from .distribute import (
    POLICIES,
    Policy,
    apportion,
    assign_many,
    distribute,
    distribute_many,
    max_feasible_target_mib,
    vnode_targets_many,
)
from .errors import EngineError, InfeasibleError, InputError, Issue, TopologyError
from .metrics import (
    cost_matrix,
    cost_matrix_many,
    distortion,
    distortion_many,
    remote_fraction,
    remote_fraction_many,
)
from .squeeze import SqueezeInput, SqueezePlan, squeeze
from .template import WorstCaseTemplate, worst_case_template
from .topology import (
    PAGES_PER_MIB,
    PhysicalTopology,
    VirtualTopology,
    physical_from_lists,
    validate_slit,
    virtual_from_lists,
)

__all__ = [
    "PAGES_PER_MIB",
    "POLICIES",
    "EngineError",
    "InfeasibleError",
    "InputError",
    "Issue",
    "PhysicalTopology",
    "Policy",
    "SqueezeInput",
    "SqueezePlan",
    "TopologyError",
    "VirtualTopology",
    "WorstCaseTemplate",
    "apportion",
    "assign_many",
    "cost_matrix",
    "cost_matrix_many",
    "distortion",
    "distortion_many",
    "distribute",
    "distribute_many",
    "max_feasible_target_mib",
    "physical_from_lists",
    "remote_fraction",
    "remote_fraction_many",
    "squeeze",
    "validate_slit",
    "virtual_from_lists",
    "vnode_targets_many",
    "worst_case_template",
]

from .migration import MigrationPlan, PlanStep, plan_migration
from .rebalance import BlockMove, RebalancePlan, plan_rebalance
from .replay import ReplayError, ReplayTrace, replay

__all__ += [
    "BlockMove",
    "MigrationPlan",
    "PlanStep",
    "RebalancePlan",
    "ReplayError",
    "ReplayTrace",
    "plan_migration",
    "plan_rebalance",
    "replay",
]
