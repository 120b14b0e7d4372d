"""Linux memory blocks in sysfs (Documentation/admin-guide/mm/memory-hotplug.rst):

- `/sys/devices/system/memory/block_size_bytes`: the block size, hex without `0x`;
- `memoryN/phys_index`: the block's id (hex, `%08lx`); block N covers physical addresses
  `[N * block_size, (N + 1) * block_size)`;
- `memoryN/state`: `online`, `offline`, `going-offline`; writing `offline` unplugs the block,
  `online_movable` plugs it into ZONE_MOVABLE (so it can be unplugged again later);
- `/sys/devices/system/node/nodeX/memoryN`: links from each node to its blocks.
The kernel may refuse to offline a block it cannot migrate pages out of (EBUSY): that is
partial progress, reported as such.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass, field
from pathlib import Path

from numa_balloon_client.programs.exits import ProgramError, UsageError

PAGE_BYTES = 4096
MIB = 1 << 20
_BLOCK = re.compile(r"^memory(\d+)$")
_MEMTOTAL = re.compile(r"^Node\s+\d+\s+MemTotal:\s+(\d+)\s*kB\s*$", re.MULTILINE)


@dataclass
class Progress:
    changed: list[int] = field(default_factory=list)
    already: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # block -> errno name
    missing: list[int] = field(default_factory=list)

    def summary(self, op: str) -> str:
        parts = [f"{op}: {len(self.changed)} block(s) changed, {len(self.already)} already"]
        if self.refused:
            refused = ", ".join(f"memory{b} ({e})" for b, e in sorted(self.refused.items()))
            parts.append(f"kernel refused {refused}")
        if self.missing:
            parts.append(f"{len(self.missing)} block(s) absent")
        return "; ".join(parts)


class UnknownNode(ProgramError):
    """The service's topology names a vnode this guest has no node for (exit 4: the guest
    was not started with the domain's NUMA layout)."""


class MemoryBlocks:
    def __init__(self, root: Path | str = "/") -> None:
        self.memory = Path(root) / "sys/devices/system/memory"
        self.nodes = Path(root) / "sys/devices/system/node"
        if not self.nodes.is_dir():
            raise UsageError(
                f"sysfs root {root}: {self.nodes} is not a directory (the root of a sysfs "
                "tree holds sys/devices/system/node; / in the guest)"
            )

    @property
    def available(self) -> bool:
        return (self.memory / "block_size_bytes").exists()

    def block_bytes(self) -> int:
        return int((self.memory / "block_size_bytes").read_text().strip(), 16)

    def state(self, block: int) -> str | None:
        try:
            with open(self.memory / f"memory{block}" / "state") as f:
                return f.read(64).strip("\0\n ")
        except OSError:
            return None

    def blocks_of(self, pfn_ranges: list[list[int]]) -> list[int]:
        size = self.block_bytes()
        out: list[int] = []
        for start, end in pfn_ranges:
            first = start * PAGE_BYTES // size
            last = -(-end * PAGE_BYTES // size)
            out.extend(range(first, last))
        return sorted(set(out))

    def set_state(self, blocks: list[int], online: bool) -> Progress:
        want = "online_movable" if online else "offline"
        progress = Progress()
        for b in blocks:
            current = self.state(b)
            if current is None:
                progress.missing.append(b)
                continue
            if current.startswith("online") == online:
                progress.already.append(b)
                continue
            try:
                with open(self.memory / f"memory{b}" / "state", "w") as f:
                    f.write(want)
                progress.changed.append(b)
            except OSError as exc:
                progress.refused[b] = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        return progress

    def node_mib(self, node: int) -> int:
        """Memory online in the node: its online blocks (what plugging changes), or, on a kernel
        without memory-block hotplug, the node's MemTotal."""
        directory = self.nodes / f"node{node}"
        if not directory.is_dir():
            raise UnknownNode(
                f"vnode {node}: {directory} is not there; the guest must see the domain's "
                "vnodes as its NUMA nodes (start it from the service's export)"
            )
        if self.available:
            blocks = [int(m.group(1)) for p in directory.iterdir() if (m := _BLOCK.match(p.name))]
            online = sum(1 for b in blocks if (self.state(b) or "").startswith("online"))
            return online * self.block_bytes() // MIB
        m = _MEMTOTAL.search((directory / "meminfo").read_text())
        return 0 if m is None else int(m.group(1)) // 1024
