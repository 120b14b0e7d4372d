"""What a guest may see: its virtual topology, its pool targets and its pending operations.

These are separate types from the toolstack's on purpose: no field here can hold a pnode, a host,
the host's distances or another domain, so nothing physical reaches a guest by accident. A guest
may be migrated to a host with another topology; it must only ever learn the virtual one.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.schemas.common import MiB, StrictModel, example, strict_example


class GuestModel(BaseModel):
    """Closed: refuses unknown attributes so a physical field cannot be slipped in."""

    model_config = ConfigDict(extra="forbid")


class GuestMemRange(GuestModel):
    start_pfn: int
    end_pfn: int


class GuestVnode(GuestModel):
    index: int
    size_mib: int
    vcpus: list[int]
    distances: list[int] = Field(description="Virtual distances (the guest's SLIT row)")
    memranges: list[GuestMemRange]


class GuestTopology(GuestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "block_mib": 128,
                    "vnodes": [
                        {
                            "index": 0,
                            "size_mib": 4096,
                            "vcpus": [0, 1],
                            "distances": [10, 21],
                            "memranges": [{"start_pfn": 0, "end_pfn": 1048576}],
                        }
                    ],
                }
            ]
        },
    )

    block_mib: int
    vnodes: list[GuestVnode]


class GuestPool(GuestModel):
    index: int
    target_mib: int
    actual_mib: int | None
    plugged_blocks: int


class GuestOperation(GuestModel):
    op: Literal["plug", "unplug", "balloon"]
    vnode: int
    mib: int
    pfn_ranges: list[list[int]] = Field(description="Guest PFN [start, end) of whole blocks")
    target_mib: int | None = Field(description="The pool's target once this is done")


class GuestBalloon(GuestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "target_mib": 6144,
                    "vnodes": [
                        {"index": 0, "target_mib": 3072, "actual_mib": 4096, "plugged_blocks": 24}
                    ],
                    "pending": [
                        {
                            "op": "unplug",
                            "vnode": 0,
                            "mib": 1024,
                            "pfn_ranges": [[786432, 819200]],
                            "target_mib": 3072,
                        }
                    ],
                }
            ]
        },
    )

    target_mib: int
    vnodes: list[GuestPool]
    pending: list[GuestOperation]


class PoolReport(StrictModel):
    model_config = strict_example({"index": 0, "actual_mib": 3072})

    index: int = Field(strict=True, ge=0, lt=32)
    actual_mib: MiB = Field(
        description="What the pool holds: the node's memory blocks online, or offline and still "
        "the device's (the hypervisor's view once a change is done)"
    )
    visible_mib: MiB | None = Field(
        default=None,
        description="What the guest kernel shows of the node: its MemTotal (optional)",
    )


class BalloonReport(StrictModel):
    model_config = strict_example({"vnodes": [{"index": 0, "actual_mib": 3072}]})

    vnodes: Annotated[list[PoolReport], Field(min_length=1, max_length=32)]


__all__ = [
    "BalloonReport",
    "GuestBalloon",
    "GuestOperation",
    "GuestPool",
    "GuestTopology",
    "GuestVnode",
    "PoolReport",
    "example",
]
