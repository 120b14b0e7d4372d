"""Kernel-shaped `/sys/devices/system/node` trees in a temporary directory.

The files carry what a real kernel writes (the full `meminfo` block, a trailing newline after
`distance`, an empty `cpulist` line for a memory-only node) plus the neighbours the reader must
ignore (`online`, `possible`, `has_cpu`, `power/`, `nodeN/cpu0`, `nodeN/memory32`).
"""

from __future__ import annotations

from pathlib import Path

MEMINFO = """\
Node {n} MemTotal:       {kb} kB
Node {n} MemFree:        {free} kB
Node {n} MemUsed:        {used} kB
Node {n} SwapCached:            0 kB
Node {n} Active:          1048576 kB
Node {n} Inactive:         524288 kB
Node {n} Dirty:                 8 kB
Node {n} FilePages:       1572864 kB
Node {n} HugePages_Total:     0
Node {n} HugePages_Free:      0
Node {n} HugePages_Surp:      0
"""


def ranges(cpus: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5', as the kernel prints cpulist."""
    out: list[str] = []
    i = 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(out)


def make_tree(
    root: Path,
    nodes: dict[int, tuple[int, list[int]]],
    distances: list[list[int]],
) -> Path:
    """nodes: node number -> (MemTotal kB, cpu ids); distances: rows in node-number order."""
    root.mkdir(parents=True, exist_ok=True)
    numbers = sorted(nodes)
    online = ranges(numbers)
    for name in ("online", "possible", "has_normal_memory", "has_memory"):
        (root / name).write_text(online + "\n")
    (root / "has_cpu").write_text(ranges([n for n in numbers if nodes[n][1]]) + "\n")
    (root / "power").mkdir(exist_ok=True)
    (root / "uevent").write_text("")
    for row, n in enumerate(numbers):
        kb, cpus = nodes[n]
        d = root / f"node{n}"
        d.mkdir()
        d.joinpath("meminfo").write_text(MEMINFO.format(n=n, kb=kb, free=kb // 2, used=kb // 2))
        d.joinpath("distance").write_text(" ".join(str(x) for x in distances[row]) + "\n")
        d.joinpath("cpulist").write_text(ranges(cpus) + "\n")
        d.joinpath("cpumap").write_text("ffff\n")
        d.joinpath("memory32").mkdir()
        for c in cpus[:2]:
            d.joinpath(f"cpu{c}").mkdir()
    return root


def two_socket(root: Path) -> Path:
    """A 2-socket Xeon: 256 GiB per socket, hyperthreads interleaved (0-15,32-47 / 16-31,48-63)."""
    return make_tree(
        root,
        {
            0: (263_999_708, [*range(0, 16), *range(32, 48)]),
            1: (264_210_432, [*range(16, 32), *range(48, 64)]),
        },
        [[10, 21], [21, 10]],
    )


def four_node(root: Path) -> Path:
    """An EPYC in NPS4: four nodes of 64 GiB on one socket, SLIT 10 local, 12 between quadrants."""
    d = [[10 if i == j else 12 for j in range(4)] for i in range(4)]
    return make_tree(root, {n: (65_536 * 1024, list(range(n * 8, n * 8 + 8))) for n in range(4)}, d)


def memory_only(root: Path) -> Path:
    """One socket plus a CXL memory expander: node 1 has memory and no CPU (empty cpulist)."""
    return make_tree(
        root,
        {0: (131_072 * 1024, list(range(16))), 1: (65_536 * 1024 + 512, [])},
        [[10, 20], [20, 10]],
    )
