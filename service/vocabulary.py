"""The service's states and policies, each defined once (policies in the engine, which owns
them).

StrEnums: a member is its string, so rows, JSON and comparisons with plain strings all agree,
and the OpenAPI document names each set once (a component the client turns into a Literal).
"""

from __future__ import annotations

from enum import StrEnum

from service.engine.distribute import Policy

__all__ = [
    "ACTIVE_MIGRATION_STATES",
    "GUEST_OPS",
    "DomainState",
    "HostLifecycle",
    "MigrationState",
    "Policy",
    "StepState",
]


class HostLifecycle(StrEnum):
    """active: takes new domains; maintenance: keeps its domains, takes none (evacuate moves
    them); offline: takes none."""

    ACTIVE = "active"
    MAINTENANCE = "maintenance"
    OFFLINE = "offline"


class DomainState(StrEnum):
    RUNNING = "running"
    MIGRATING = "migrating"


class MigrationState(StrEnum):
    PLANNED = "planned"
    PREPARING = "preparing"
    MIGRATING = "migrating"
    SETTLING = "settling"
    COMPLETED = "completed"
    ABORTED = "aborted"
    FAILED = "failed"


class StepState(StrEnum):
    WAITING = "waiting"
    PENDING = "pending"
    ACKED = "acked"
    FAILED = "failed"
    CANCELLED = "cancelled"


# A migration holds claims and its domain in these states.
ACTIVE_MIGRATION_STATES = (
    MigrationState.PLANNED,
    MigrationState.PREPARING,
    MigrationState.MIGRATING,
    MigrationState.SETTLING,
)


# The steps a guest's driver carries out on its own pools; a report of pool sizes completes them.
GUEST_OPS = ("plug", "unplug", "balloon")
