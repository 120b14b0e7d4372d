"""Linux sysfs: any Linux host. Topology and free memory from `/sys/devices/system/node`.

It drives no hypervisor: pool operations are the guests' own drivers' work (the guest agent
offlines and onlines memory blocks), migrations and a failover's restarts (`start`) need the
libvirt or xen backend.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from numa_balloon_agent.backends.base import DomainReport
from numa_balloon_agent.steps import Outcome, Step, not_ours
from numa_balloon_client.machine import tree_external_id
from numa_balloon_client.programs.exits import UsageError
from numa_balloon_client.sysfs import SysfsError, host_from_sysfs, node_indices

_MEMFREE = re.compile(r"^Node\s+\d+\s+MemFree:\s+(\d+)\s*kB\s*$", re.MULTILINE)


class SysfsBackend:
    name = "sysfs"

    def __init__(self, root: Path | str = "/") -> None:
        self.root = Path(root)
        self.nodes = self.root / "sys/devices/system/node"
        if not self.nodes.is_dir():
            raise UsageError(
                f"sysfs root {root}: {self.nodes} is not a directory (the root of a sysfs "
                "tree holds sys/devices/system/node; / for this machine)"
            )

    def external_id(self) -> str | None:
        """The machine the tree is of: `<root>/etc/machine-id` (/etc/machine-id for /)."""
        return tree_external_id(self.root)

    def discover(self, *, name: str, reserved_mib: int) -> dict[str, Any]:
        return host_from_sysfs(self.nodes, name=name, reserved_mib=reserved_mib)

    def free_mib(self) -> list[int]:
        out = []
        for n in node_indices(self.nodes):
            path = self.nodes / f"node{n}" / "meminfo"
            m = _MEMFREE.search(path.read_text())
            if m is None:
                raise SysfsError(f"{path} has no MemFree line")
            out.append(int(m.group(1)) // 1024)
        return out

    def domains(self) -> list[DomainReport]:
        return []

    def apply(self, step: Step, *, dry_run: bool) -> Outcome:
        if step.op in ("plug", "unplug", "balloon"):
            return not_ours("sysfs backend: the guest's driver carries out pool operations")
        if step.op == "release":
            return Outcome(True, True, "sysfs backend: no hypervisor holds memory for it here")
        if step.op == "start":
            return Outcome(
                True,
                False,
                f"sysfs backend: this agent observes the machine's NUMA nodes and runs no "
                f"hypervisor, so it cannot start domain {step.domain_id} after its host failed; "
                "a host that receives restarts needs its agent run with --backend libvirt or xen",
            )
        return Outcome(
            True,
            False,
            f"sysfs backend drives no hypervisor and cannot {step.op}; "
            "run the agent with --backend libvirt or xen on this host",
        )

    def close(self) -> None:
        pass
