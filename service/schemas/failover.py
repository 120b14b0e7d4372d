"""Toolstack schemas of failover planning, protection and recovery (issue 26)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.schemas.common import Id, strict_example

MAX_HOST_FAILURES = 1024
SELECTOR_DESCRIPTION = (
    "Which domains are protected: `key=value` pairs separated by commas, every one must match "
    "(`ha=true,tier=gold`); absent or empty: every domain that runs on a host"
)


class FailoverPlanRequest(BaseModel):
    model_config = strict_example(
        {"host_failures": 1, "label_selector": "ha=true", "allow_spread": False}
    )

    host_failures: int = Field(
        default=1,
        strict=True,
        ge=0,
        le=MAX_HOST_FAILURES,
        description="r: every set of this many hosts failing at once is a scenario",
    )
    label_selector: str | None = Field(
        default=None, max_length=1024, description=SELECTOR_DESCRIPTION
    )
    allow_spread: bool = Field(
        default=False,
        strict=True,
        description="A restart may spread a vnode's memory over several pnodes of its new host "
        "(otherwise each vnode must fit on one pnode)",
    )
    restarts: bool = Field(
        default=True,
        strict=True,
        description="List where each host's protected domains restart when it fails alone",
    )


class UnplacedOut(BaseModel):
    domain_id: Id
    domain_name: str
    reason: str


class VnodeHome(BaseModel):
    vnode: int
    pnode: int


class RestartOut(BaseModel):
    failed_host_id: Id
    domain_id: Id
    host_id: Id
    vnodes: list[VnodeHome]
    distortion: float


class WorstOut(BaseModel):
    failed_host_ids: list[Id]
    free_after_mib: int
    squeeze_mib: int
    unplaced: list[UnplacedOut]
    proven: bool = Field(description="Its stranded domains cannot be fewer")


class FailoverPlanOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "host_failures": 1,
                    "tolerated": True,
                    "max_host_failures": 2,
                    "max_host_failures_exact": True,
                    "exact": True,
                    "method": "exhaustive",
                    "note": "",
                    "scenarios": 40,
                    "searched": 0,
                    "protected_domains": 12,
                    "duration_ms": 12.5,
                    "worst": None,
                    "restarts": [],
                }
            ]
        }
    )

    host_failures: int
    tolerated: bool = Field(
        description="Every scenario of host_failures failures restarts every "
        "protected domain (never claimed without proof)"
    )
    max_host_failures: int = Field(description="The largest r proven tolerated")
    max_host_failures_exact: bool = Field(description="r + 1 is proven not tolerated")
    exact: bool = Field(description="Every scenario was enumerated and each answer proven")
    method: str = Field(
        description="exhaustive; or the bound that decided: slots, reservations, totals, bound"
    )
    note: str
    scenarios: int
    searched: int
    protected_domains: int
    duration_ms: float
    worst: WorstOut | None
    restarts: list[RestartOut]


class HaSettings(BaseModel):
    """Failover protection: what `PATCH /v1/cluster` sets under `ha`."""

    model_config = strict_example({"host_failures": 1, "label_selector": "ha=true"})

    host_failures: int = Field(default=1, strict=True, ge=0, le=MAX_HOST_FAILURES)
    label_selector: str | None = Field(
        default=None, max_length=1024, description=SELECTOR_DESCRIPTION
    )
    allow_spread: bool = Field(default=False, strict=True)


class HaOut(BaseModel):
    host_failures: int
    label_selector: str | None
    allow_spread: bool
    holds: bool = Field(description="The plan is tolerated now")
    overcommitted: bool = Field(
        description="A change was let through (?ha_overcommit=true) or protection was turned on "
        "while the plan did not hold; changes are not refused until it holds again"
    )
    exact: bool
    protected_domains: int
    worst_failed_host_ids: list[Id]
    stranded: list[UnplacedOut]


class RecoveryRestart(BaseModel):
    domain_id: Id
    host_id: Id
    state: str = Field(
        description="The domain's state now: restarting until the destination's "
        "agent acknowledges its start step, then running (failed if it could not)"
    )


class RecoveryOut(BaseModel):
    reason: str
    failed_at: str
    restarts: list[RecoveryRestart]
    stranded: list[UnplacedOut]
    done: bool = Field(description="No restart is still waiting for its destination's agent")


FAIL_EXAMPLES: dict[str, Any] = {
    "reason": {"summary": "say why, for the events", "value": {"reason": "power supply failed"}},
    "defaults": {"summary": "no body: declared failed by an operator", "value": {}},
}


class FailHost(BaseModel):
    model_config = strict_example({"reason": "power supply failed"})

    reason: str = Field(default="declared failed by an operator", min_length=1, max_length=500)
