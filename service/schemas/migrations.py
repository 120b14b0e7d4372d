"""Toolstack schemas for migrations between NUMA topologies and host rebalances."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from service.schemas.agent import StepActor
from service.schemas.common import Id, IdIn, MiB, StrictModel, example, strict_example
from service.vocabulary import MigrationState, Policy

Strategy = Literal["rebalance", "replug"]


class MigrationRequest(StrictModel):
    model_config = strict_example(
        {
            "domain_id": "0b7e5c1a-3f8d-4a52-b0e4-6c1d2e3f4a5b",
            "destination_host_id": "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a",
            "strategy": "rebalance",
        }
    )

    domain_id: IdIn
    destination_host_id: IdIn
    strategy: Strategy = Field(
        default="rebalance",
        description="rebalance: fewest MiB moved between pools; replug: unplug every hot-pluggable "
        "block down to a boot minimum, migrate, replug by the new topology",
    )
    policy: Policy | None = Field(
        default=None,
        description="Pool levels on the destination; default the domain's policy "
        "(faithful when it is explicit)",
    )
    auto_advance: bool = Field(
        default=False,
        strict=True,
        description="The service advances each phase as soon as its steps are acknowledged "
        "(starting at once with planned -> preparing); the caller only watches the events",
    )


class PlanStepOut(BaseModel):
    seq: int
    phase: Literal["claim", "prepare", "migrate", "settle", "release"]
    op: Literal["claim", "balloon", "unplug", "plug", "migrate", "release"]
    host: Literal["source", "destination"]
    host_id: Id
    vnode: int | None
    pnode: int | None
    mib: int
    pfn_ranges: list[list[int]]
    target_mib: int | None


class PlanOut(BaseModel):
    model_config = example(
        {
            "feasible": True,
            "reason": "",
            "strategy": "rebalance",
            "domain_id": "0b7e5c1a-3f8d-4a52-b0e4-6c1d2e3f4a5b",
            "source_host_id": "6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70",
            "destination_host_id": "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a",
            "mapping_before": [0, 0],
            "mapping_after": [0, 1],
            "target_before_mib": 8192,
            "target_after_mib": 8192,
            "claims_mib": [4096, 4096],
            "steps": [
                {
                    "seq": 0,
                    "phase": "claim",
                    "op": "claim",
                    "host": "destination",
                    "host_id": "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a",
                    "vnode": None,
                    "pnode": 0,
                    "mib": 4096,
                    "pfn_ranges": [],
                    "target_mib": None,
                }
            ],
            "moved_mib": 0,
            "distortion_before": 11.0,
            "distortion_after": 0.0,
            "remote_fraction_before": 0.0,
            "remote_fraction_after": 0.0,
            "backing_before": [[4096], [4096]],
            "backing_after": [[4096, 0], [0, 4096]],
        }
    )

    feasible: bool
    reason: str
    strategy: Strategy
    domain_id: Id
    source_host_id: Id
    destination_host_id: Id
    mapping_before: list[int]
    mapping_after: list[int]
    target_before_mib: int
    target_after_mib: int
    claims_mib: list[int] = Field(description="Destination MiB claimed per pnode")
    steps: list[PlanStepOut]
    moved_mib: int
    distortion_before: float
    distortion_after: float
    remote_fraction_before: float
    remote_fraction_after: float
    backing_before: list[list[int]]
    backing_after: list[list[int]]


class ClaimOut(BaseModel):
    host_id: Id
    pnode: int
    mib: int
    expires_at: datetime | None = Field(
        description="When the lease of a planned migration's claim ends; null: held until the "
        "migration ends (it is past planned: the guest may be using this memory)"
    )


class MigrationStepOut(BaseModel):
    id: Id
    seq: int
    phase: str
    op: str
    host_id: Id = Field(description="The host whose agent sees (and, for agent steps, acks) it")
    actor: StepActor
    vnode: int | None
    pnode: int | None
    mib: int
    target_mib: int | None
    state: str
    detail: str | None


class MigrationOut(BaseModel):
    model_config = example(
        {
            "id": "5e4d3c2b-1a09-4f8e-9d7c-6b5a4f3e2d1c",
            "domain_id": "0b7e5c1a-3f8d-4a52-b0e4-6c1d2e3f4a5b",
            "state": "planned",
            "strategy": "rebalance",
            "source_host_id": "6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70",
            "destination_host_id": "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a",
            "claims": [],
            "steps": [],
            "reason": None,
            "auto_advance": False,
            "expires_at": "2026-11-26T08:05:00Z",
            "version": 1,
            "created_at": "2026-11-26T08:00:00Z",
            "updated_at": "2026-11-26T08:00:00Z",
            "plan": None,
        }
    )

    id: Id
    domain_id: Id
    state: MigrationState
    strategy: Strategy
    source_host_id: Id | None
    destination_host_id: Id | None
    plan: PlanOut | None
    claims: list[ClaimOut]
    steps: list[MigrationStepOut]
    reason: str | None
    auto_advance: bool
    stuck: bool = Field(
        description="Past planned and no progress (advance, acknowledged step) for "
        "NUMA_BALLOON_STUCK_AFTER_S; the claims stay held"
    )
    stuck_reason: str | None
    progress_at: datetime
    expires_at: datetime | None = Field(
        description="The claims' lease while planned; null once past planned (claims held)"
    )
    version: int
    created_at: datetime
    updated_at: datetime


RunsOn = Literal["source", "destination"]


class AbortRequest(StrictModel):
    model_config = strict_example({"runs_on": "source"})

    runs_on: RunsOn | None = Field(
        default=None,
        description="Where the domain runs now. Required to abort a migration in `migrating` "
        "(the live migration may have run) unless its migrate step was acknowledged as failed: "
        "`source` rolls back; `destination` records the move and settles there",
    )


# Swagger UI shows no example for an optional body (`Model | None`: an anyOf with null), so the
# routes that take one list these at the media type (FastAPI `Body(openapi_examples=...)`).
ABORT_EXAMPLES: dict[str, Any] = {
    "release": {
        "summary": "planned or preparing: release the claims, restore the source pools",
        "value": {},
    },
    "source": {
        "summary": "migrating, the domain still runs on the source: roll back",
        "value": {"runs_on": "source"},
    },
    "destination": {
        "summary": "migrating, the domain already runs on the destination: settle there",
        "value": {"runs_on": "destination"},
    },
}


class RebalanceRequest(StrictModel):
    model_config = strict_example({"budget_mib": 8192, "dry_run": True})

    budget_mib: MiB = Field(description="At most this many MiB move between (vnode, pnode) pairs")
    dry_run: bool = False


class BlockMoveOut(BaseModel):
    domain_id: Id
    from_vnode: int
    from_pnode: int
    to_vnode: int
    to_pnode: int
    mib: int
    pfn_ranges: list[list[int]]


class RebalanceOut(BaseModel):
    model_config = example(
        {
            "host_id": "6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70",
            "dry_run": True,
            "moves": [
                {
                    "domain_id": "0b7e5c1a-3f8d-4a52-b0e4-6c1d2e3f4a5b",
                    "from_vnode": 0,
                    "from_pnode": 1,
                    "to_vnode": 0,
                    "to_pnode": 0,
                    "mib": 1024,
                    "pfn_ranges": [[0, 262144]],
                }
            ],
            "moved_mib": 1024,
            "distortion_before": 2.5,
            "distortion_after": 0.0,
            "remote_fraction_before": 0.25,
            "remote_fraction_after": 0.0,
        }
    )

    host_id: Id
    dry_run: bool
    moves: list[BlockMoveOut]
    moved_mib: int
    distortion_before: float
    distortion_after: float
    remote_fraction_before: float
    remote_fraction_after: float


class EvacuateRequest(StrictModel):
    model_config = strict_example({"strategy": "rebalance", "auto_advance": True})

    strategy: Strategy = Field(default="rebalance", description="For every migration started")
    auto_advance: bool = Field(
        default=False,
        strict=True,
        description="Every migration advances on its own as its steps are acknowledged",
    )


EVACUATE_EXAMPLES: dict[str, Any] = {
    "auto": {
        "summary": "drain with migrations that advance on their own",
        "value": {"strategy": "rebalance", "auto_advance": True},
    },
    "replug": {
        "summary": "unplug/replug every domain; advance each migration yourself",
        "value": {"strategy": "replug", "auto_advance": False},
    },
    "defaults": {"summary": "the defaults (rebalance, advanced by hand)", "value": {}},
}


class Unplaced(BaseModel):
    domain_id: Id
    reason: str = Field(description="Why no other host takes it (MiB figures, per host tried)")


class EvacuationOut(BaseModel):
    model_config = example(
        {
            "host_id": "6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70",
            "migrations": [],
            "unplaced": [
                {
                    "domain_id": "0b7e5c1a-3f8d-4a52-b0e4-6c1d2e3f4a5b",
                    "reason": "no other active host has room for it",
                }
            ],
        }
    )

    host_id: Id
    migrations: list[MigrationOut] = Field(description="One per domain leaving the host")
    unplaced: list[Unplaced] = Field(description="Domains that stay, each with its reason")
