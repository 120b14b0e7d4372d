"""Kernel-shaped sysfs trees for the agent tests: a host's nodes with the full `meminfo` block
(the client's tree builder) and a guest's memory blocks (the demo's builder, shared)."""

from __future__ import annotations

from pathlib import Path

from demo.sysfs_trees import MEMORY, NODE, block_states, guest_blocks
from tests.client.sysfs_trees import make_tree

__all__ = ["MEMORY", "NODE", "block_states", "guest_tree", "host_tree"]


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
    return guest_blocks(root, blocks_per_node, block_mib)
