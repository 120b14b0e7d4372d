"""One interface for every backend: discover, observe, apply a step, report domains."""

from __future__ import annotations

from typing import Any, Protocol

from numa_balloon_agent.steps import Outcome, Step

#: `{"domain_id": uuid, "vnodes": [{"index": v, "actual_mib": n}]}`, as the batch report takes.
DomainReport = dict[str, Any]


class Backend(Protocol):
    name: str

    def discover(self, *, name: str, reserved_mib: int) -> dict[str, Any]:
        """The `POST /v1/hosts` body for this machine."""
        ...

    def external_id(self) -> str | None:
        """Which machine this backend observes, as the host's `external_id` (how the agent
        finds the host registered for it before), or None when it cannot tell."""
        ...

    def free_mib(self) -> list[int]:
        """Free MiB per pnode (pnode i = the i-th node in ascending number), now."""
        ...

    def domains(self) -> list[DomainReport]:
        """Each running domain's per-vnode actual size as the hypervisor sees it."""
        ...

    def apply(self, step: Step, *, dry_run: bool) -> Outcome:
        """Carry the step out (or, with dry_run, only say what would be done)."""
        ...

    def close(self) -> None: ...


def default_distances(n: int) -> list[list[int]]:
    """10 local, 20 remote: what libvirt documents when a platform gives no SLIT."""
    return [[10 if i == j else 20 for j in range(n)] for i in range(n)]
