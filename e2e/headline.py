"""The last line of `make e2e`, for people and for scripts (one line):

    e2e real-guest: vnodes=2 resizes=6 converged_s=2.3 guest_agent_ops=30 migration=ok
        boot_s=9.3

- `vnodes`: the guest's NUMA nodes, each with its own virtio-mem device;
- `resizes`: vnode size changes the service asked for and the guest kernel's node showed;
- `converged_s`: the slowest of them, from the request to the service's accounting at the
  targets (every vnode's reported size at its target, no pool step left);
- `guest_agent_ops`: memory block state changes (online/offline) the guest agent made inside
  the guest, as the guest kernel's block states show them (each also in the agent's log);
- `migration`: `ok` when the guest's replug migration to the second host passed, else `skipped`;
- `boot_s`: from starting the domain to the guest's init reporting its nodes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

PATTERN = re.compile(
    r"^e2e real-guest: vnodes=(\d+) resizes=(\d+) converged_s=(\d+\.\d+) "
    r"guest_agent_ops=(\d+) migration=(ok|skipped) boot_s=(\d+\.\d+)$"
)


@dataclass(frozen=True)
class Headline:
    vnodes: int
    resizes: int
    converged_s: float
    boot_s: float
    guest_agent_ops: int = 0
    migration: Literal["ok", "skipped"] = "skipped"

    def __str__(self) -> str:
        return (
            f"e2e real-guest: vnodes={self.vnodes} resizes={self.resizes} "
            f"converged_s={self.converged_s:.1f} guest_agent_ops={self.guest_agent_ops} "
            f"migration={self.migration} boot_s={self.boot_s:.1f}"
        )


def parse(line: str) -> Headline:
    found = PATTERN.match(line.strip())
    if found is None:
        raise ValueError(f"not an e2e headline: {line!r}")
    vnodes, resizes, converged, ops, migration, boot = found.groups()
    return Headline(
        vnodes=int(vnodes),
        resizes=int(resizes),
        converged_s=float(converged),
        boot_s=float(boot),
        guest_agent_ops=int(ops),
        migration="ok" if migration == "ok" else "skipped",
    )
