"""The NUMA topology of a Linux machine, read from sysfs, as a `POST /v1/hosts` body.

Both `numa-balloon hosts register --from-sysfs` and the host agent (`numa-balloon-agent
discover`) register the machine they run on; they share this reader so the two never disagree
about what a node is. It is a pure function of a directory tree (the real one is
`/sys/devices/system/node`), so tests build kernel-shaped trees in temporary directories.

What the kernel publishes, per online node `nodeN/`:
- `meminfo`: `Node N MemTotal:  263999708 kB` (KiB; we keep whole MiB, rounded down),
- `distance`: one SLIT row, a distance to every online node in index order (`10 21`),
- `cpulist`: ranges like `0-15,32-47`; empty for a memory-only node (CXL, HBM, PMEM).

When the node directory is a whole tree's (`<root>/sys/devices/system/node`, the real one's root
being `/`), the body carries that machine's `external_id` from `<root>/etc/machine-id` (see
`numa_balloon_client.machine`), so the host agent started later on the machine finds the host.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from numa_balloon_client.machine import tree_external_id

SYSFS_NODE_ROOT = Path("/sys/devices/system/node")
NODE_DIR_PARTS = ("sys", "devices", "system", "node")

_NODE_DIR = re.compile(r"^node(\d+)$")
_MEMTOTAL = re.compile(r"^Node\s+\d+\s+MemTotal:\s+(\d+)\s*kB\s*$", re.MULTILINE)


class SysfsError(ValueError):
    """The tree is not a NUMA node directory the kernel would publish (or cannot be read)."""


def parse_cpulist(text: str) -> list[int]:
    """`0-3,8,10-11` -> [0, 1, 2, 3, 8, 10, 11]; empty text (memory-only node) -> []."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError as exc:
            raise SysfsError(f"bad cpulist range {part!r}") from exc
        if last < first:
            raise SysfsError(f"bad cpulist range {part!r}")
        cpus.extend(range(first, last + 1))
    return cpus


def node_indices(root: Path) -> list[int]:
    """The node numbers present under `root`, ascending (they need not be contiguous)."""
    if not root.is_dir():
        raise SysfsError(f"{root} is not a directory")
    found = [int(m.group(1)) for p in root.iterdir() if (m := _NODE_DIR.match(p.name))]
    if not found:
        raise SysfsError(f"no nodeN directories under {root}")
    return sorted(found)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise SysfsError(f"cannot read {path}: {exc.strerror or exc}") from exc


def read_node(root: Path, index: int) -> tuple[int, list[int], list[int]]:
    """(MemTotal in MiB, SLIT row, cpu ids) of one node."""
    node = root / f"node{index}"
    m = _MEMTOTAL.search(_read(node / "meminfo"))
    if m is None:
        raise SysfsError(f"{node / 'meminfo'} has no 'Node {index} MemTotal: ... kB' line")
    try:
        row = [int(x) for x in _read(node / "distance").split()]
    except ValueError as exc:
        raise SysfsError(f"{node / 'distance'} is not a row of integers") from exc
    return int(m.group(1)) // 1024, row, parse_cpulist(_read(node / "cpulist"))


def host_from_sysfs(
    root: Path | str = SYSFS_NODE_ROOT, *, name: str, reserved_mib: int | list[int] = 0
) -> dict[str, Any]:
    """A host create body (`{name, pnodes, distances}`) for the nodes under `root`.

    pnode i is the i-th node in ascending node number, as the kernel orders the distance rows.
    `reserved_mib` (memory held back for the hypervisor and dom0, which sysfs cannot know) is one
    value for every node or one per node. A memory-only node has `cpus: 0`; the service decides
    whether it accepts such a node, the reader does not hide it.
    """
    root = Path(root)
    indices = node_indices(root)
    n = len(indices)
    reserved = [reserved_mib] * n if isinstance(reserved_mib, int) else list(reserved_mib)
    if len(reserved) != n:
        raise SysfsError(f"reserved_mib has {len(reserved)} values for {n} nodes")
    pnodes: list[dict[str, int]] = []
    distances: list[list[int]] = []
    for i, index in enumerate(indices):
        memory_mib, row, cpus = read_node(root, index)
        if len(row) != n:
            raise SysfsError(f"node{index}/distance has {len(row)} entries for {n} nodes")
        pnodes.append({"memory_mib": memory_mib, "reserved_mib": reserved[i], "cpus": len(cpus)})
        distances.append(row)
    body: dict[str, Any] = {"name": name, "pnodes": pnodes, "distances": distances}
    if (machine := machine_of(root)) is not None:
        body["external_id"] = machine
    return body


def machine_of(node_dir: Path) -> str | None:
    """The external id of the machine whose tree holds `node_dir`, if it is a tree's."""
    absolute = node_dir.absolute()
    if absolute.parts[-len(NODE_DIR_PARTS) :] != NODE_DIR_PARTS:
        return None
    return tree_external_id(absolute.parents[len(NODE_DIR_PARTS) - 1])
