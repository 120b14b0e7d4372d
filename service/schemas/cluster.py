"""Toolstack schemas for the cluster settings and overview."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from service.schemas.common import example, strict_example
from service.schemas.failover import HaOut, HaSettings


class ClusterOut(BaseModel):
    model_config = example(
        {
            "block_mib": 128,
            "worst_case_template": None,
            "hosts": 2,
            "domains": 0,
            "hosts_by_state": {"active": 2, "maintenance": 0, "offline": 0},
            "capacity_mib": 524288,
            "allocated_mib": 0,
            "claimed_mib": 0,
            "free_mib": 524288,
            "version": 1,
        }
    )

    block_mib: int
    worst_case_template: dict[str, Any] | None
    hosts: int = Field(description="Number of registered hosts")
    domains: int = Field(description="Number of domains")
    hosts_by_state: dict[str, int]
    capacity_mib: int
    allocated_mib: int
    claimed_mib: int
    free_mib: int
    version: int
    ha: HaOut | None = Field(
        default=None,
        description="Failover protection (issue 26) and whether it holds now; null when off",
    )


class ClusterPut(BaseModel):
    model_config = strict_example({"block_mib": 128})

    block_mib: int = Field(
        strict=True, ge=1, le=1 << 20, description="Memory hotplug block, a power of two (MiB)"
    )


class ClusterPatch(BaseModel):
    """`{"ha": {...}}` turns failover protection on (or changes it), `{"ha": null}` off; a
    field left out is left alone."""

    model_config = strict_example({"ha": {"host_failures": 1, "label_selector": "ha=true"}})

    block_mib: int | None = Field(
        default=None, strict=True, ge=1, le=1 << 20, description="As PUT /v1/cluster"
    )
    ha: HaSettings | None = None
