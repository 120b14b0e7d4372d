"""Toolstack schemas for host squeezes and the cluster's worst-case template."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from service.schemas.common import Id, MiB, StrictModel, example, strict_example

# Canonical decimal only: "00", "+1" and full-width digits would each name pnode 0 or 1 twice.
PnodeKey = Annotated[str, Field(pattern=r"^(0|[1-9][0-9]{0,2})$")]


class SqueezeRequest(StrictModel):
    """What a squeeze should achieve, in exactly one form. Each says how much memory is free
    *afterwards* (capacity - claimed - allocated, as the accounting counts it), except
    ``free_more_mib``, which says how much more than is free now."""

    model_config = strict_example({"keep_free_mib": {"0": 8192}, "dry_run": True})

    keep_free_mib: dict[PnodeKey, MiB] | None = Field(
        default=None,
        max_length=64,
        description='MiB to leave free per pnode afterwards, keyed by pnode index: {"0": 8192}',
    )
    keep_total_free_mib: MiB | None = Field(
        default=None, description="MiB to leave free on the whole host afterwards"
    )
    free_more_mib: MiB | None = Field(
        default=None,
        description="MiB to free on the whole host beyond what is free now (the accounting's "
        "free MiB at the request, plus this, are left free afterwards)",
    )
    free_mib: dict[PnodeKey, MiB] | None = Field(
        default=None,
        max_length=64,
        deprecated=True,
        description="Deprecated name of keep_free_mib (MiB left free per pnode afterwards)",
    )
    total_free_mib: MiB | None = Field(
        default=None,
        deprecated=True,
        description="Deprecated name of keep_total_free_mib (MiB left free on the whole host "
        "afterwards, not MiB to free)",
    )
    balance: bool = Field(
        default=False, description="Share all free memory out (every domain toward dynamic_max)"
    )
    dry_run: bool = Field(default=False, description="Return the plan and change nothing")

    @model_validator(mode="after")
    def _one_form(self) -> SqueezeRequest:
        # The deprecated fields are read through __dict__: their attributes warn.
        given = [
            self.keep_free_mib,
            self.keep_total_free_mib,
            self.free_more_mib,
            self.__dict__.get("free_mib"),
            self.__dict__.get("total_free_mib"),
        ]
        forms = sum(g is not None for g in given) + self.balance
        if forms != 1:
            raise ValueError(
                "give exactly one of keep_free_mib, keep_total_free_mib, free_more_mib or "
                "balance: true (free_mib and total_free_mib are the deprecated names of the "
                "first two)"
            )
        return self

    def per_pnode(self) -> tuple[str, dict[str, int]] | None:
        """MiB to leave free per pnode and the field they came in (for located errors)."""
        if self.keep_free_mib is not None:
            return "keep_free_mib", self.keep_free_mib
        old: dict[str, int] | None = self.__dict__.get("free_mib")
        return None if old is None else ("free_mib", old)

    def keep_total(self) -> int | None:
        """MiB to leave free host-wide, by either name (``free_more_mib`` is not this)."""
        if self.keep_total_free_mib is not None:
            return self.keep_total_free_mib
        old: int | None = self.__dict__.get("total_free_mib")
        return old


Phase = Literal["decrease", "increase", "unchanged", "held"]


class SqueezedDomain(BaseModel):
    domain_id: Id
    target_mib: int = Field(
        description="The new target; for a held domain, the actual size it is counted at"
    )
    previous_target_mib: int
    vnode_targets_mib: list[int]
    phase: Phase = Field(
        description="decrease | increase (only when balancing: a request to free memory never "
        "raises a target) | unchanged | held (left out; its target is not changed)"
    )
    held: bool = Field(description="Left out (inactive or uncooperative): held at its actual size")


class SqueezeResult(BaseModel):
    model_config = example(
        {
            "host_id": "6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70",
            "dry_run": True,
            "gamma": 0.5,
            "domains": [
                {
                    "domain_id": "0b7e5c1a-3f8d-4a52-b0e4-6c1d2e3f4a5b",
                    "target_mib": 6144,
                    "previous_target_mib": 8192,
                    "vnode_targets_mib": [3072, 3072],
                    "phase": "decrease",
                    "held": False,
                }
            ],
            "order": ["0b7e5c1a-3f8d-4a52-b0e4-6c1d2e3f4a5b"],
            "free_mib_after": [10240, 8192],
        }
    )

    host_id: Id
    dry_run: bool
    gamma: float = Field(description="The one fraction of every domain's dynamic range kept")
    domains: list[SqueezedDomain]
    order: list[Id] = Field(description="Apply in this order: all decreases, then increases")
    free_mib_after: list[int]


class TemplateVnode(BaseModel):
    index: int
    distances: list[int]


class WorstCaseTemplateOut(BaseModel):
    model_config = example(
        {
            "vnode_count": 2,
            "vnodes": [{"index": 0, "distances": [10, 21]}, {"index": 1, "distances": [21, 10]}],
            "distances": [[10, 21], [21, 10]],
            "classes": [10, 21],
            "source_host_id": "6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70",
            "hosts_considered": 2,
        }
    )

    vnode_count: int
    vnodes: list[TemplateVnode]
    distances: list[list[int]]
    classes: list[int]
    source_host_id: Id | None
    hosts_considered: int
