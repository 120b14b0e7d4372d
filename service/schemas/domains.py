"""Toolstack schemas for domains (VMs) with a virtual NUMA topology.

These carry pnodes and hosts; the guest's own view is `service.schemas.guest`, a separate set of
types, so that nothing physical reaches a guest by accident.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from service.engine.topology import MAX_VNODES
from service.schemas.common import (
    ExternalId,
    Id,
    IdIn,
    Labels,
    MiB,
    Name,
    PositiveMiB,
    StrictModel,
    example,
    strict_example,
)
from service.vocabulary import Policy

MAX_VCPUS = 4096
VcpuId = Annotated[int, Field(strict=True, ge=0, lt=MAX_VCPUS)]
Distance = Annotated[int, Field(strict=True)]

TWO_VNODE_EXAMPLE = {
    "name": "db-01",
    "memory": {"dynamic_min_mib": 4096, "dynamic_max_mib": 8192, "target_mib": 6144},
    "vnodes": [
        {"size_mib": 4096, "vcpus": [0, 1], "distances": [10, 21]},
        {"size_mib": 4096, "vcpus": [2, 3], "distances": [21, 10]},
    ],
    "policy": "proportional",
}


class MemoryIn(StrictModel):
    model_config = strict_example(
        {"dynamic_min_mib": 4096, "dynamic_max_mib": 8192, "target_mib": 6144}
    )

    dynamic_min_mib: MiB
    dynamic_max_mib: PositiveMiB
    target_mib: MiB = Field(description="Initial balloon target; below static max = pre-ballooned")


class VnodeIn(StrictModel):
    model_config = strict_example({"size_mib": 4096, "vcpus": [0, 1], "distances": [10, 21]})

    size_mib: PositiveMiB = Field(description="Guest-physical span (SRAT), a multiple of block_mib")
    vcpus: list[VcpuId] = Field(max_length=MAX_VCPUS)
    distances: list[Distance] = Field(
        max_length=MAX_VNODES, description="This vnode's row of the virtual SLIT"
    )


class DomainShape(StrictModel):
    """What a domain needs: memory and a virtual topology in one of three forms."""

    memory: MemoryIn
    vnodes: list[VnodeIn] | None = Field(
        default=None, max_length=MAX_VNODES, description="Explicit vnodes (one of three forms)"
    )
    template: Literal["worst-case"] | None = Field(
        default=None,
        description="The cluster's worst-case virtual topology, with `vcpus` (one of three forms)",
    )
    vnode_count: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=MAX_VNODES,
        description="Shorthand (one of three forms): this many vnodes of equal size and vCPU "
        "count, with `vcpus`; virtual distances from the host given in host_id (vnode v on "
        "pnode v*n/k, when k <= n pnodes), else 10 local / 20 remote",
    )
    vcpus: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=MAX_VCPUS,
        description="With template or vnode_count: vCPU count, spread evenly over the vnodes",
    )
    vnode_size_mib: PositiveMiB | None = Field(
        default=None,
        description="With template or vnode_count: every vnode's span (default dynamic_max / k, "
        "block-aligned)",
    )
    host_id: IdIn | None = Field(
        default=None, description="Place here, or fail; else the best host"
    )
    policy: Policy = Policy.PROPORTIONAL
    vnode_targets_mib: list[MiB] | None = Field(
        default=None, max_length=MAX_VNODES, description="Per-vnode targets (policy explicit)"
    )
    block_mib: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=1 << 20,
        description="The guest's memory hotplug block (power of two); default the cluster's",
    )

    @model_validator(mode="after")
    def _one_topology(self) -> DomainShape:
        forms = [f for f in ("vnodes", "template", "vnode_count") if getattr(self, f) is not None]
        if len(forms) != 1:
            raise ValueError("give exactly one of 'vnodes', 'template' or 'vnode_count'")
        if self.vnodes is None and self.vcpus is None:
            raise ValueError(f"'vcpus' is required with '{forms[0]}'")
        if self.vnodes is not None and (self.vcpus is not None or self.vnode_size_mib is not None):
            raise ValueError("'vcpus' and 'vnode_size_mib' only go with a template or vnode_count")
        if (self.policy == "explicit") != (self.vnode_targets_mib is not None):
            raise ValueError("'vnode_targets_mib' goes with, and only with, policy 'explicit'")
        return self


class DomainCreate(DomainShape):
    model_config = strict_example(TWO_VNODE_EXAMPLE)

    name: Name
    external_id: ExternalId | None = None
    labels: Labels = Field(default_factory=dict)


class PlacementRequest(DomainShape):
    """A domain's create body with name and host optional: where would it go?"""

    model_config = strict_example(
        {
            "memory": {"dynamic_min_mib": 4096, "dynamic_max_mib": 16384, "target_mib": 8192},
            "vnode_count": 2,
            "vcpus": 8,
        }
    )

    name: Name | None = None
    external_id: ExternalId | None = None
    labels: Labels = Field(default_factory=dict)


class DomainPatch(StrictModel):
    model_config = strict_example({"labels": {"tenant": "acme"}, "external_id": "nova-4f1c"})

    labels: Labels | None = Field(default=None, description="Replaces every label")
    external_id: ExternalId | None = Field(default=None, description="null clears it")

    @model_validator(mode="after")
    def _something(self) -> DomainPatch:
        if not self.model_fields_set:
            raise ValueError("give 'labels' or 'external_id'")
        if "labels" in self.model_fields_set and self.labels is None:
            raise ValueError("'labels' cannot be null; send {} to clear them")
        return self


class MemoryOut(BaseModel):
    static_max_mib: int
    dynamic_min_mib: int
    dynamic_max_mib: int
    target_mib: int


class MemRange(BaseModel):
    start_pfn: int
    end_pfn: int


class StepFailure(BaseModel):
    step_id: Id
    op: str
    vnode: int | None
    attempt: int = Field(description="The attempt that failed, from 1")
    max_attempts: int
    detail: str | None = Field(description="What the agent said")
    failed_at: datetime
    retry_at: datetime | None = Field(description="When the next attempt is shown to agents")
    retry_step_id: Id | None = None


class VnodeOut(BaseModel):
    index: int
    size_mib: int
    vcpus: list[int]
    distances: list[int]
    target_mib: int
    actual_mib: int | None = Field(
        description="Held by the hypervisor for this vnode (boot memory + plugged blocks, or "
        "the balloon's size), as the host agent's or the guest agent's last report said; null "
        "until one reports. This is what the accounting charges."
    )
    guest_visible_mib: int | None = Field(
        default=None,
        description="Visible to the guest: its kernel's MemTotal of this node, as the guest "
        "agent last reported it; lower than actual_mib by the kernel's own reservations and "
        "by blocks not (yet) online. null without a guest agent that reports it.",
    )
    home_pnode: int | None = Field(description="The pnode running this vnode's vCPUs")
    backing_mib: list[int] = Field(description="MiB of this vnode on each pnode of the host")
    memranges: list[MemRange]
    plugged_blocks: int


HostAgentState = Literal["connected", "lost"]


class DomainOut(BaseModel):
    model_config = example(
        {
            "id": "0b7e5c1a-3f8d-4a52-b0e4-6c1d2e3f4a5b",
            "name": "db-01",
            "host_id": "6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70",
            "state": "running",
            "memory": {
                "static_max_mib": 8192,
                "dynamic_min_mib": 4096,
                "dynamic_max_mib": 8192,
                "target_mib": 6144,
            },
            "vnodes": [
                {
                    "index": 0,
                    "size_mib": 4096,
                    "vcpus": [0, 1],
                    "distances": [10, 21],
                    "target_mib": 3072,
                    "actual_mib": None,
                    "home_pnode": 0,
                    "backing_mib": [3072, 0],
                    "memranges": [{"start_pfn": 0, "end_pfn": 1048576}],
                    "plugged_blocks": 24,
                }
            ],
            "policy": "proportional",
            "block_mib": 128,
            "uncooperative": False,
            "external_id": "nova-4f1c",
            "labels": {"tenant": "acme"},
            "version": 1,
            "created_at": "2026-11-26T08:00:00Z",
        }
    )

    id: Id
    name: str
    host_id: Id | None
    state: str
    memory: MemoryOut
    vnodes: list[VnodeOut]
    policy: Policy
    block_mib: int
    uncooperative: bool
    host_agent: HostAgentState | None = Field(
        default=None,
        description="Its host's agent: connected (lease held), lost (the lease lapsed: what the "
        "service holds of this domain is no longer observed), null when the host's agent never "
        "took a lease or the domain has no host",
    )
    step_failure: StepFailure | None = Field(
        default=None,
        description="The last failed attempt of one of its pool steps, while it stands: "
        "retried after retry_at (null once max_attempts are spent); cleared when a pool step "
        "is done or the target changes",
    )
    external_id: str | None
    labels: dict[str, str]
    version: int
    created_at: datetime


class DomainCreated(DomainOut):
    guest_token: str | None = Field(
        description="The guest's bearer token for /v1/guest. Shown once, and again on an "
        "Idempotency-Key replay within the key's window (rotate it with POST "
        "/v1/domains/{id}/guest-token); null only on the replay of a record stored before "
        "secrets were kept."
    )


class TargetPut(StrictModel):
    model_config = strict_example({"target_mib": 5120, "policy": "round-robin"})

    target_mib: MiB
    policy: Policy | None = Field(default=None, description="Also switch the domain's policy")
    vnode_targets_mib: list[MiB] | None = Field(
        default=None, max_length=MAX_VNODES, description="Per-vnode targets (policy explicit)"
    )


class PlacementOut(BaseModel):
    host_id: Id
    host_name: str
    feasible: bool
    score: float | None
    distortion: float | None
    mapping: list[int] = Field(description="Home pnode per vnode")
    spread: bool
    reason: str
    max_feasible_mib: int = Field(
        description="The largest target this host could back now with this mapping "
        "(at most dynamic_max_mib)"
    )
    free_mib: int = Field(description="The host's free MiB, all pnodes")


class Placements(BaseModel):
    model_config = example(
        {
            "domain_id": "0b7e5c1a-3f8d-4a52-b0e4-6c1d2e3f4a5b",
            "hosts": [
                {
                    "host_id": "6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70",
                    "host_name": "compute-07",
                    "feasible": True,
                    "score": 0.01,
                    "distortion": 0.0,
                    "mapping": [0, 1],
                    "spread": False,
                    "reason": "",
                    "max_feasible_mib": 8192,
                    "free_mib": 249856,
                }
            ],
        }
    )

    domain_id: Id
    hosts: list[PlacementOut]


class PlacementPreview(BaseModel):
    model_config = example(
        {
            "hosts": [
                {
                    "host_id": "6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70",
                    "host_name": "compute-07",
                    "feasible": True,
                    "score": 0.01,
                    "distortion": 0.0,
                    "mapping": [0, 1],
                    "spread": False,
                    "reason": "",
                    "max_feasible_mib": 16384,
                    "free_mib": 249856,
                }
            ]
        }
    )

    hosts: list[PlacementOut] = Field(description="Best first; nothing was created or claimed")
