"""Toolstack schemas for hosts, their pnodes and their accounting."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from service.schemas.common import Id, MiB, Name, PositiveMiB, StrictModel, example, strict_example

HostState = Literal["active", "maintenance", "offline"]
MAX_PNODES = 64

Distance = Annotated[int, Field(strict=True)]

TWO_SOCKET_EXAMPLE = {
    "name": "compute-07",
    "pnodes": [
        {"memory_mib": 262144, "reserved_mib": 4096, "cpus": 32},
        {"memory_mib": 262144, "reserved_mib": 2048, "cpus": 32},
    ],
    "distances": [[10, 21], [21, 10]],
}


class PnodeIn(StrictModel):
    model_config = strict_example({"memory_mib": 262144, "reserved_mib": 4096, "cpus": 32})

    memory_mib: PositiveMiB
    reserved_mib: MiB = Field(
        default=0, description="Held back for the hypervisor and dom0; must be below memory_mib"
    )
    cpus: int = Field(strict=True, ge=1, le=4096)


class HostCreate(StrictModel):
    model_config = strict_example(TWO_SOCKET_EXAMPLE)

    name: Name
    pnodes: list[PnodeIn] = Field(min_length=1, max_length=MAX_PNODES)
    distances: list[Annotated[list[Distance], Field(max_length=MAX_PNODES)]] = Field(
        max_length=MAX_PNODES,
        description="ACPI SLIT: n x n integers, diagonal 10, off-diagonal 11..254",
    )


class HostPatch(StrictModel):
    model_config = strict_example({"state": "maintenance"})

    state: HostState


class PnodeOut(BaseModel):
    index: int
    memory_mib: int
    reserved_mib: int
    capacity_mib: int
    cpus: int


class HostOut(BaseModel):
    model_config = example(
        {
            "id": "6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70",
            "name": "compute-07",
            "state": "active",
            "pnodes": [
                {
                    "index": 0,
                    "memory_mib": 262144,
                    "reserved_mib": 4096,
                    "capacity_mib": 258048,
                    "cpus": 32,
                }
            ],
            "distances": [[10]],
            "drift_flagged": False,
            "version": 1,
            "created_at": "2026-11-26T08:00:00Z",
        }
    )

    id: Id
    name: str
    state: HostState
    pnodes: list[PnodeOut]
    distances: list[list[int]]
    drift_flagged: bool
    version: int
    created_at: datetime


class HostCreated(HostOut):
    agent_token: str | None = Field(
        description="The host agent's bearer token. Shown once; null when an Idempotency-Key "
        "replay returns the stored response (rotate it with POST /v1/hosts/{id}/agent-token)."
    )


class PnodeAccounting(BaseModel):
    index: int
    capacity_mib: int
    allocated_mib: int = Field(description="Σ of the domains' charged_mib on this pnode")
    claimed_mib: int = Field(description="Σ of the live claims (lapsed leases no longer count)")
    free_mib: int = Field(description="capacity_mib - allocated_mib - claimed_mib")
    observed_free_mib: int | None


class DomainBacking(BaseModel):
    domain_id: Id
    backing_mib: list[list[int]] = Field(description="vnode x pnode, MiB")
    charged_mib: list[list[int]] = Field(
        description="vnode x pnode, MiB counted against the pnode: the backing, or the size the "
        "guest reports for the vnode when it holds more than its target (on the vnode's home)"
    )
    held_over_target_mib: int = Field(
        description="Σ charged_mib - Σ backing_mib: memory the guest still holds above its target"
    )


class Accounting(BaseModel):
    model_config = example(
        {
            "host_id": "6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70",
            "pnodes": [
                {
                    "index": 0,
                    "capacity_mib": 258048,
                    "allocated_mib": 8192,
                    "claimed_mib": 0,
                    "free_mib": 249856,
                    "observed_free_mib": None,
                }
            ],
            "domains": [],
        }
    )

    host_id: Id
    pnodes: list[PnodeAccounting]
    domains: list[DomainBacking]
