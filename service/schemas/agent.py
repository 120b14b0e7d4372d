"""Host agent schemas: observed free memory, the step queue, acknowledgements; token rotation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from service.schemas.common import Id, IdIn, MiB, StrictModel, example, strict_example


class ObservedPnode(StrictModel):
    model_config = strict_example({"index": 0, "free_mib": 250000})

    index: int = Field(strict=True, ge=0, lt=64)
    free_mib: MiB


class ObservedIn(StrictModel):
    model_config = strict_example({"pnodes": [{"index": 0, "free_mib": 250000}]})

    pnodes: list[ObservedPnode] = Field(min_length=1, max_length=64)


class DriftPnode(BaseModel):
    index: int
    accounted_free_mib: int
    observed_free_mib: int | None
    drift_mib: int | None = Field(description="observed - accounted; large values are flagged")


class ObservedOut(BaseModel):
    model_config = example(
        {
            "host_id": "6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70",
            "drift_flagged": False,
            "threshold_mib": 1024,
            "pnodes": [
                {
                    "index": 0,
                    "accounted_free_mib": 249856,
                    "observed_free_mib": 250000,
                    "drift_mib": 144,
                }
            ],
        }
    )

    host_id: Id
    drift_flagged: bool
    threshold_mib: int
    pnodes: list[DriftPnode]


StepActor = Annotated[
    Literal["service", "agent", "guest"],
    Field(
        description="Who completes the step: the service itself (claims), the host agent "
        "(migrate, release, rebalance moves; it acks them) or the guest's balloon driver "
        "(plug, unplug, balloon; its report completes them, an agent ack also does)"
    ),
]


class StepDestination(BaseModel):
    """Where a migrate step takes the domain: what the source host's agent needs to build the
    destination configuration (the new vnode -> pnode binding, e.g. libvirt's <numatune>). A
    recovery's start step carries the same for the host it restarts on (this one): each vnode's
    pnode there, where its memory is charged (xl's vnuma `pnode=`)."""

    host_id: Id
    host_name: str
    nodesets: list[list[int]] = Field(
        description="per vnode, the destination pnodes that back it (its <memnode> nodeset)"
    )


class StepOut(BaseModel):
    model_config = example(
        {
            "id": "1c9a4f0e-2b3d-4e5f-8a7b-6c5d4e3f2a1b",
            "domain_id": "0b7e5c1a-3f8d-4a52-b0e4-6c1d2e3f4a5b",
            "migration_id": None,
            "host_id": "6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70",
            "actor": "guest",
            "seq": 1,
            "phase": "balloon",
            "op": "unplug",
            "vnode": 0,
            "pnode": 0,
            "mib": 1024,
            "pfn_ranges": [[786432, 819200]],
            "target_mib": 3072,
            "state": "pending",
            "detail": None,
            "created_at": "2026-11-26T08:00:00Z",
        }
    )

    id: Id
    domain_id: Id
    migration_id: Id | None
    host_id: Id = Field(description="The host whose agent sees this step")
    actor: StepActor
    seq: int
    phase: str
    op: str
    vnode: int | None
    pnode: int | None
    mib: int
    pfn_ranges: list[list[int]]
    target_mib: int | None
    grow: bool | None = Field(
        default=None, description="pool steps: whether the pool grows to target_mib (or shrinks)"
    )
    state: str
    detail: str | None
    attempt: int = Field(default=1, description="1, or the retry's number after failures")
    created_at: datetime
    destination: StepDestination | None = Field(
        default=None,
        description="migrate steps: the destination and its binding; a recovery's start steps "
        "(phase restart): this host and each vnode's pnode on it",
    )


class StepList(BaseModel):
    items: list[StepOut]


class AckIn(StrictModel):
    model_config = strict_example({"ok": True, "detail": "unplugged 8 blocks"})

    ok: bool = Field(strict=True)
    detail: str | None = Field(default=None, max_length=2000)


class AgentToken(BaseModel):
    model_config = example(
        {"host_id": "6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70", "agent_token": "nbh_..."}
    )

    host_id: Id
    agent_token: str


class GuestToken(BaseModel):
    model_config = example(
        {"domain_id": "0b7e5c1a-3f8d-4a52-b0e4-6c1d2e3f4a5b", "guest_token": "nbg_..."}
    )

    domain_id: Id
    guest_token: str


class ReportVnode(StrictModel):
    index: int = Field(strict=True, ge=0, lt=32)
    actual_mib: MiB


class ReportDomain(StrictModel):
    domain_id: IdIn
    vnodes: list[ReportVnode] = Field(max_length=32)


class AgentReportIn(StrictModel):
    """One request per host per interval: free memory per pnode and every domain's per-vnode
    actual size as the hypervisor sees it (guests without an in-guest driver are observed too)."""

    model_config = strict_example(
        {
            "pnodes": [{"index": 0, "free_mib": 250000}],
            "domains": [
                {
                    "domain_id": "0b7e5c1a-3f8d-4a52-b0e4-6c1d2e3f4a5b",
                    "vnodes": [{"index": 0, "actual_mib": 2048}],
                }
            ],
        }
    )

    pnodes: list[ObservedPnode] = Field(default_factory=list, max_length=64)
    domains: list[ReportDomain] = Field(default_factory=list, max_length=4096)


class AgentReportOut(BaseModel):
    model_config = example(
        {
            "host_id": "6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70",
            "domains_accepted": 1,
            "unknown_domains": [],
            "drift_flagged": False,
            "drift": [
                {
                    "index": 0,
                    "accounted_free_mib": 249856,
                    "observed_free_mib": 250000,
                    "drift_mib": 144,
                }
            ],
        }
    )

    host_id: Id
    domains_accepted: int = Field(description="domains of this host whose sizes were recorded")
    unknown_domains: list[str] = Field(
        description="reported ids numa-balloon does not manage, or domains migrating to or from "
        "this host but placed on the other; ignored (a domain of another host is refused: 409 "
        "with `foreign_domain_ids`)"
    )
    drift_flagged: bool
    drift: list[DriftPnode]


class LeaseIn(StrictModel):
    model_config = strict_example({"seq": 42})

    seq: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=2**62,
        description="The agent's renewals counted from 0 since it started: 0, or a count that "
        "went back, tells the service the agent restarted (a full report is then wanted)",
    )


class LeaseOut(BaseModel):
    model_config = example(
        {
            "host_id": "6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70",
            "expires_at": "2026-12-06T10:00:40Z",
            "report": False,
            "steps_pending": False,
        }
    )

    host_id: Id
    expires_at: datetime = Field(
        description="Renew before this (NUMA_BALLOON_AGENT_LEASE_S after now); past it the "
        "host's agent is judged lost: no domain is placed or migrated to the host until it renews"
    )
    report: bool = Field(
        description="The service wants a full batch report now: after a restart of either side, "
        "a return from lost, while a step is pending or the host is flagged for drift, and every "
        "NUMA_BALLOON_AGENT_FULL_REPORT_S"
    )
    steps_pending: bool = Field(description="Steps are pending on this host: fetch them")


LEASE_EXAMPLES: dict[str, Any] = {
    "renew": {"summary": "a renewal: no body", "value": {}},
    "seq": {
        "summary": "with the agent's cycle number (0 after it restarted: a full report is asked)",
        "value": {"seq": 42},
    },
}
