"""Real machine shapes, as `numactl --hardware` shows them (memory scaled down for a laptop)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def slit(n: int, per_socket: int, near: int, far: int) -> list[list[int]]:
    """An ACPI SLIT: 10 local, `near` inside a socket, `far` across sockets."""
    return [
        [10 if i == j else near if i // per_socket == j // per_socket else far for j in range(n)]
        for i in range(n)
    ]


@dataclass(frozen=True)
class Machine:
    name: str
    shape: str
    pnodes: int
    memory_mib: int  # per pnode
    reserved_mib: int  # per pnode, for the hypervisor and dom0
    cpus: int  # per pnode
    distances: list[list[int]]

    def body(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pnodes": [
                {
                    "memory_mib": self.memory_mib,
                    "reserved_mib": self.reserved_mib,
                    "cpus": self.cpus,
                }
            ]
            * self.pnodes,
            "distances": self.distances,
        }

    @property
    def capacity_mib(self) -> int:
        return self.pnodes * (self.memory_mib - self.reserved_mib)


CLUSTER: tuple[Machine, ...] = (
    # A single-socket box without NUMA: one node.
    Machine("lab-1node", "1 socket, 1 node", 1, 36864, 4096, 16, [[10]]),
    # A classic 2-socket server: SLIT 10/21.
    Machine("dell-2socket", "2 sockets", 2, 18432, 2048, 12, slit(2, 1, 12, 21)),
    # AMD EPYC with NPS4: one socket split into 4 nodes, SLIT 10/12.
    Machine("epyc-nps4", "EPYC, NPS4", 4, 9216, 1024, 8, slit(4, 4, 12, 12)),
    # A 4-socket Xeon with sub-NUMA clustering SNC4: 16 nodes, 12 in a socket, 21 across.
    Machine("xeon-4s-snc4", "4 sockets x SNC4", 16, 4608, 512, 4, slit(16, 4, 12, 21)),
)
