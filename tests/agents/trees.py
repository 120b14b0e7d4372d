"""Kernel-shaped sysfs trees for the agents: a host's nodes (the client's tree builder under
`<root>/sys/devices/system/node`) and a guest's memory blocks, laid out as the kernel does:
`memory/block_size_bytes` (hex), `memory/memoryN/{phys_index,state,online,removable}` and the
`node/nodeX/memoryN` links."""

from __future__ import annotations

import os
from pathlib import Path

from tests.client.sysfs_trees import make_tree

NODE = "sys/devices/system/node"
MEMORY = "sys/devices/system/memory"


def host_tree(root: Path, nodes_mib: list[int], cpus_per_node: int = 8) -> Path:
    n = len(nodes_mib)
    slit = [[10 if i == j else 21 for j in range(n)] for i in range(n)]
    nodes = {
        i: (mib * 1024, list(range(i * cpus_per_node, (i + 1) * cpus_per_node)))
        for i, mib in enumerate(nodes_mib)
    }
    make_tree(root / NODE, nodes, slit)
    return root


def guest_tree(root: Path, blocks_per_node: list[int], block_mib: int = 128) -> Path:
    """A guest whose vnode v holds the next `blocks_per_node[v]` blocks, all online."""
    host_tree(root, [b * block_mib for b in blocks_per_node], cpus_per_node=2)
    memory = root / MEMORY
    memory.mkdir(parents=True)
    (memory / "block_size_bytes").write_text(f"{block_mib << 20:x}\n")
    (memory / "auto_online_blocks").write_text("offline\n")
    block = 0
    for node, count in enumerate(blocks_per_node):
        # make_tree leaves a stray memory32 directory in each node: the kernel's own links only
        os.rmdir(root / NODE / f"node{node}" / "memory32")
        for _ in range(count):
            d = memory / f"memory{block}"
            d.mkdir()
            (d / "phys_index").write_text(f"{block:08x}\n")
            (d / "state").write_text("online\n")
            (d / "online").write_text("1\n")
            (d / "removable").write_text("1\n")
            (d / f"node{node}").symlink_to(root / NODE / f"node{node}")
            (root / NODE / f"node{node}" / f"memory{block}").symlink_to(d)
            block += 1
    return root


def block_states(root: Path) -> dict[int, str]:
    memory = root / MEMORY
    return {
        int(p.name[6:]): (p / "state").read_text().strip()
        for p in memory.iterdir()
        if p.name.startswith("memory") and p.name[6:].isdigit()
    }
