"""A sysfs tree shaped as the e2e guest's kernel showed it, and that kernel's answers to writes.

Recorded from `make e2e`'s guest (Debian's 6.1 kernel under QEMU 7.2, TCG, `pc-i440fx`): two
NUMA nodes of 256 MiB boot memory each and one virtio-mem device per node (128 MiB blocks):

    memory0  node0 online valid_zones=none    offline -> EINVAL (holes below 1 MiB)
    memory1  node0 online valid_zones=DMA32   offline -> EBUSY  (the kernel's own pages)
    memory2  node1 online valid_zones=DMA32   offline -> EBUSY
    memory3  node1 online valid_zones=DMA32   offline -> EINVAL (its top 128 KiB is reserved)
    memory32 node0 online valid_zones=Movable (virtio0's region, 0x100000000-0x12fffffff)
    memory38 node1 online valid_zones=Movable (virtio1's region, 0x130000000-0x15fffffff)

A device block offlined reads `offline` with valid_zones `Normal Movable`; onlined with
`online_movable` it reads `online` (never the zone) with valid_zones `Movable`; writing the state
a block is in is EINVAL. A virtio-mem device whose requested size drops (module parameter
`unplug_online=0`) takes back only blocks that are offline: their directories leave sysfs.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from demo.sysfs_trees import MEMORY, NODE, host_nodes
from numa_balloon_guest.blocks import MemoryBlocks

BLOCK_MIB = 128
BOOT = {0: [0, 1], 1: [2, 3]}  # node -> its boot memory blocks
DEVICE_FIRST = {0: 32, 1: 38}  # node -> the first block of its virtio-mem device's region
DEVICE_BLOCKS = 6  # 768 MiB per device
REFUSED_OFFLINE = {0: errno.EINVAL, 1: errno.EBUSY, 2: errno.EBUSY, 3: errno.EINVAL}
IOMEM = """\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-000fffff : Reserved
00100000-1ffdffff : System RAM
1ffe0000-1fffffff : Reserved
20000000-febfffff : PCI Bus 0000:00
100000000-12fffffff : virtio0
  100000000-10fffffff : System RAM (virtio_mem)
130000000-15fffffff : virtio1
  130000000-137ffffff : System RAM (virtio_mem)
200000000-27fffffff : PCI Bus 0000:00
"""


def real_guest_tree(root: Path, plugged: dict[int, int]) -> Path:
    """The guest with `plugged[node]` device blocks online on each node, as after boot."""
    host_nodes(root, [256, 256], cpus_per_node=1, far=20)
    memory = root / MEMORY
    memory.mkdir(parents=True)
    (memory / "block_size_bytes").write_text(f"{BLOCK_MIB << 20:x}\n")
    (memory / "auto_online_blocks").write_text("offline\n")
    (root / "proc").mkdir()
    (root / "proc" / "iomem").write_text(IOMEM)
    for node, blocks in BOOT.items():
        for b in blocks:
            _block(root, node, b, "online", "none" if b == 0 else "DMA32")
    for node, n in plugged.items():
        device_plugs(root, node, n, online=True)
    return root


def _block(root: Path, node: int, block: int, state: str, zones: str) -> None:
    d = root / MEMORY / f"memory{block}"
    d.mkdir()
    (d / "phys_index").write_text(f"{block:08x}\n")
    (d / "state").write_text(f"{state}\n")
    (d / "valid_zones").write_text(f"{zones}\n")
    (d / "removable").write_text("1\n")  # always 1 since Linux 5.x: it says nothing
    node_dir = root / NODE / f"node{node}"
    (d / f"node{node}").symlink_to(node_dir)
    (node_dir / f"memory{block}").symlink_to(d)


def device_blocks(root: Path, node: int) -> list[int]:
    first = DEVICE_FIRST[node]
    return [
        b for b in range(first, first + DEVICE_BLOCKS) if (root / MEMORY / f"memory{b}").exists()
    ]


def device_plugs(root: Path, node: int, n: int, *, online: bool = False) -> list[int]:
    """The device plugs `n` more blocks, lowest first: offline (`memhp_default_state=offline`)
    unless `online`."""
    have = device_blocks(root, node)
    start = DEVICE_FIRST[node] + len(have)
    added = list(range(start, start + n))
    state, zones = ("online", "Movable") if online else ("offline", "Normal Movable")
    for b in added:
        _block(root, node, b, state, zones)
    return added


def device_unplugs_offline(root: Path, node: int) -> list[int]:
    """The device's requested size dropped: it takes back its offline blocks (what virtio-mem
    does with `unplug_online=0`), which leave sysfs."""
    gone = []
    for b in device_blocks(root, node):
        d = root / MEMORY / f"memory{b}"
        if (d / "state").read_text().strip() == "offline":
            (root / NODE / f"node{node}" / f"memory{b}").unlink()
            for f in d.iterdir():
                f.unlink()
            d.rmdir()
            gone.append(b)
    return gone


class RecordedKernel(MemoryBlocks):
    """`MemoryBlocks` on `real_guest_tree`, whose `state` writes get the answers the real
    kernel gave (a plain file would take any string)."""

    def write_state(self, block: int, value: str) -> None:
        d = self.memory / f"memory{block}"
        if not d.is_dir():
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        state = (d / "state").read_text().strip()
        zones = (d / "valid_zones").read_text().strip()
        if value == "offline":
            if state == "offline":
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            refused = REFUSED_OFFLINE.get(block, errno.EBUSY if zones == "Normal" else 0)
            if refused:
                raise OSError(refused, os.strerror(refused))
            (d / "state").write_text("offline\n")
            (d / "valid_zones").write_text("Normal Movable\n")
            return
        if value not in ("online", "online_kernel", "online_movable") or state == "online":
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        (d / "state").write_text("online\n")
        (d / "valid_zones").write_text("Movable\n" if value == "online_movable" else "Normal\n")


def states(root: Path) -> dict[int, str]:
    memory = root / MEMORY
    return {
        int(p.name[6:]): (p / "state").read_text().strip()
        for p in memory.iterdir()
        if p.name.startswith("memory") and p.name[6:].isdigit()
    }
