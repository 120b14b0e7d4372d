"""sysfs trees for agents that run without a real machine under them (the demo with real
agents, tests): a host's `/sys/devices/system/node` and a Linux guest's memory blocks, with the
files and links the kernel publishes (see numa_balloon_guest.blocks)."""

from __future__ import annotations

from pathlib import Path

NODE = "sys/devices/system/node"
MEMORY = "sys/devices/system/memory"

MEMINFO = "Node {n} MemTotal:       {kb} kB\nNode {n} MemFree:        {free} kB\n"


def host_nodes(root: Path, nodes_mib: list[int], cpus_per_node: int = 8, far: int = 21) -> Path:
    """`nodes_mib[i]` MiB on node i, half of it free, SLIT 10 local and `far` remote."""
    n = len(nodes_mib)
    base = root / NODE
    base.mkdir(parents=True, exist_ok=True)
    (base / "online").write_text(f"0-{n - 1}\n" if n > 1 else "0\n")
    for i, mib in enumerate(nodes_mib):
        d = base / f"node{i}"
        d.mkdir()
        kb = mib * 1024
        (d / "meminfo").write_text(MEMINFO.format(n=i, kb=kb, free=kb // 2))
        (d / "distance").write_text(" ".join("10" if j == i else str(far) for j in range(n)) + "\n")
        first = i * cpus_per_node
        cpus = f"{first}-{first + cpus_per_node - 1}" if cpus_per_node > 1 else str(first)
        (d / "cpulist").write_text((cpus if cpus_per_node else "") + "\n")
    return root


def guest_blocks(root: Path, blocks_per_node: list[int], block_mib: int = 128) -> Path:
    """A guest whose node v holds the next `blocks_per_node[v]` memory blocks, all online."""
    host_nodes(root, [b * block_mib for b in blocks_per_node], cpus_per_node=2)
    memory = root / MEMORY
    memory.mkdir(parents=True)
    (memory / "block_size_bytes").write_text(f"{block_mib << 20:x}\n")
    (memory / "auto_online_blocks").write_text("offline\n")
    block = 0
    for node, count in enumerate(blocks_per_node):
        node_dir = root / NODE / f"node{node}"
        for _ in range(count):
            d = memory / f"memory{block}"
            d.mkdir()
            (d / "phys_index").write_text(f"{block:08x}\n")
            (d / "state").write_text("online\n")
            (d / "online").write_text("1\n")
            (d / "removable").write_text("1\n")
            (d / f"node{node}").symlink_to(node_dir)
            (node_dir / f"memory{block}").symlink_to(d)
            block += 1
    return root


def block_states(root: Path) -> dict[int, str]:
    memory = root / MEMORY
    return {
        int(p.name[6:]): (p / "state").read_text().strip()
        for p in memory.iterdir()
        if p.name.startswith("memory") and p.name[6:].isdigit()
    }
