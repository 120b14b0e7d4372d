"""Parse `xl info -n`: the `cpu_topology` and `numa_info` blocks, as xl_info.c prints them:

    cpu_topology           :
    cpu:    core    socket     node
      0:       0        0        0
    ...
    numa_info              :
    node:    memsize    memfree    distances
       0:     65536      60000      10,21

memsize and memfree are MiB (the hypervisor's bytes >> 20); a node whose entry is invalid is not
printed at all, so node numbers may have gaps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NODE = re.compile(r"^\s*(\d+):\s+(\d+)\s+(\d+)\s+([\d,]+)\s*$")
_CPU = re.compile(r"^\s*(\d+):\s+(\d+)\s+(\d+)\s+(\d+)\s*$")


class XlInfoError(ValueError):
    pass


@dataclass(frozen=True)
class XenNode:
    node: int
    memsize_mib: int
    memfree_mib: int
    distances: list[int]
    cpus: int


def parse_xl_info(text: str) -> list[XenNode]:
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("numa_info"))
    except StopIteration:
        raise XlInfoError("no numa_info block: run `xl info -n`") from None
    cpus: dict[int, int] = {}
    in_cpus = False
    for line in lines:
        if line.startswith("cpu_topology"):
            in_cpus = True
            continue
        if in_cpus:
            m = _CPU.match(line)
            if m:
                cpus[int(m.group(4))] = cpus.get(int(m.group(4)), 0) + 1
            elif not line.startswith("cpu:"):
                in_cpus = False
    nodes = []
    for line in lines[start + 2 :]:
        m = _NODE.match(line)
        if m is None:
            break
        node = int(m.group(1))
        dist = [int(x) for x in m.group(4).split(",")]
        nodes.append(XenNode(node, int(m.group(2)), int(m.group(3)), dist, cpus.get(node, 0)))
    if not nodes:
        raise XlInfoError("the numa_info block lists no node")
    numbers = [n.node for n in nodes]
    for n in nodes:
        if len(n.distances) < max(numbers) + 1:
            raise XlInfoError(f"node {n.node} has {len(n.distances)} distances")
    return nodes


def slit(nodes: list[XenNode]) -> list[list[int]]:
    """Distance rows restricted to the listed nodes (gaps dropped), in node order."""
    numbers = [n.node for n in nodes]
    return [[n.distances[m] for m in numbers] for n in nodes]
