"""The agent's view of a step and of what it did with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Pool operations: the hypervisor side (virtio-mem size, xenstore target, balloon) is set by
#: the host agent; the guest follows, and the reports (the guest's or this agent's batch report)
#: complete the step, so the host agent never acknowledges them itself.
POOL_OPS = ("plug", "unplug", "balloon")
KIB_PER_MIB = 1024


@dataclass(frozen=True)
class Step:
    id: str
    domain_id: str
    op: str
    phase: str
    vnode: int | None
    pnode: int | None
    mib: int
    target_mib: int | None
    grow: bool | None
    pfn_ranges: list[list[int]] = field(default_factory=list)
    destination: dict[str, Any] | None = None

    @classmethod
    def from_api(cls, raw: dict[str, Any]) -> Step:
        return cls(
            id=str(raw["id"]),
            domain_id=str(raw["domain_id"]),
            op=str(raw["op"]),
            phase=str(raw["phase"]),
            vnode=raw.get("vnode"),
            pnode=raw.get("pnode"),
            mib=int(raw.get("mib") or 0),
            target_mib=raw.get("target_mib"),
            grow=raw.get("grow"),
            pfn_ranges=list(raw.get("pfn_ranges") or []),
            destination=raw.get("destination"),
        )

    @property
    def is_pool_op(self) -> bool:
        return self.op in POOL_OPS and self.vnode is not None and self.target_mib is not None

    def describe(self) -> str:
        where = f" vnode {self.vnode}" if self.vnode is not None else ""
        return f"{self.phase}/{self.op}{where} {self.mib} MiB of domain {self.domain_id}"


@dataclass(frozen=True)
class Outcome:
    """What the backend did. `ack`: acknowledge the step now with `ok` and `detail` (the call
    made and its result); otherwise the step completes when a report shows the pool there."""

    ack: bool
    ok: bool
    detail: str


def not_ours(reason: str) -> Outcome:
    """A step this backend leaves to someone else (the guest's driver); never acknowledged."""
    return Outcome(ack=False, ok=True, detail=reason)
