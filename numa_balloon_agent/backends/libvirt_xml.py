"""Pure functions over libvirt XML: host topology from the capabilities, a domain's cells and
virtio-mem devices, the device update the agent sends, and the destination XML of a migration.
Kept apart from the connection so the XML the agent would send is testable on its own."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from numa_balloon_agent.backends.base import default_distances

_KIB = {"b": 1 / 1024, "bytes": 1 / 1024, "k": 1, "kib": 1, "m": 1024, "mib": 1024}
_KIB.update({"g": 1024**2, "gib": 1024**2, "t": 1024**3, "tib": 1024**3})
_KIB.update({"kb": 1000 / 1024, "mb": 1000**2 / 1024, "gb": 1000**3 / 1024})


def kib(element: ET.Element | None) -> int:
    """A libvirt scaled integer (`unit`, default KiB) in KiB."""
    if element is None or element.text is None:
        return 0
    unit = (element.get("unit") or "KiB").lower()
    return int(int(element.text) * _KIB[unit])


def host_topology(capabilities: str) -> tuple[list[int], list[int], list[list[int]]]:
    """(memory MiB, cpu count, SLIT) per cell in ascending cell id; [] when no NUMA cells."""
    root = ET.fromstring(capabilities)
    cells = sorted(root.findall("host/topology/cells/cell"), key=lambda c: int(c.get("id", "0")))
    ids = [int(c.get("id", "0")) for c in cells]
    memory = [kib(c.find("memory")) // 1024 for c in cells]
    cpus = [len(c.findall("cpus/cpu")) for c in cells]
    slit = default_distances(len(cells))
    for i, cell in enumerate(cells):
        for sib in cell.findall("distances/sibling"):
            slit[i][ids.index(int(sib.get("id", "0")))] = int(sib.get("value", "0"))
    return memory, cpus, slit


def host_uuid(capabilities: str) -> str | None:
    """The hypervisor host's UUID (`<host><uuid>`), which some drivers do not publish."""
    found = ET.fromstring(capabilities).findtext("host/uuid")
    return found.strip() if found and found.strip() else None


@dataclass(frozen=True)
class VirtioMem:
    node: int
    size_kib: int
    block_kib: int
    requested_kib: int
    current_kib: int | None
    element: ET.Element


@dataclass(frozen=True)
class DomainLayout:
    boot_kib: dict[int, int]  # cell id -> boot memory
    devices: dict[int, VirtioMem]  # cell id -> its virtio-mem device
    current_memory_kib: int


def layout(domain_xml: str) -> DomainLayout:
    root = ET.fromstring(domain_xml)
    boot = {int(c.get("id", "0")): kib_attr(c) for c in root.findall("cpu/numa/cell")}
    devices = {}
    for m in root.findall("devices/memory[@model='virtio-mem']"):
        node = int(m.findtext("target/node", "0"))
        current = m.find("target/current")
        devices[node] = VirtioMem(
            node=node,
            size_kib=kib(m.find("target/size")),
            block_kib=kib(m.find("target/block")),
            requested_kib=kib(m.find("target/requested")),
            current_kib=None if current is None else kib(current),
            element=m,
        )
    return DomainLayout(boot, devices, kib(root.find("currentMemory")))


def kib_attr(cell: ET.Element) -> int:
    """A cell's `memory` attribute (with its `unit`) in KiB."""
    probe = ET.Element("m", {"unit": cell.get("unit", "KiB")})
    probe.text = cell.get("memory", "0")
    return kib(probe)


def requested_kib(device: VirtioMem, boot_kib: int, target_mib: int) -> int:
    """The device size that gives the vnode its target: whole blocks above boot memory, rounded
    up (the balloon trims the rest), never more than the device holds."""
    above = max(target_mib * 1024 - boot_kib, 0)
    blocks = -(-above // device.block_kib)
    return min(device.size_kib, blocks * device.block_kib)


def device_update_xml(device: VirtioMem, requested: int) -> str:
    """The `<memory model='virtio-mem'>` element with a new `<requested>`, as
    `virsh update-memory-device` sends it to virDomainUpdateDeviceFlags."""
    element = copy.deepcopy(device.element)
    target = element.find("target")
    assert target is not None
    node = target.find("requested")
    if node is None:
        node = ET.SubElement(target, "requested")
    node.set("unit", "KiB")
    node.text = str(requested)
    return ET.tostring(element, encoding="unicode")


def destination_xml(domain_xml: str, nodesets: list[list[int]]) -> str:
    """The domain's XML with `<numatune>` (and each virtio-mem device's nodemask) bound to the
    destination pnodes: what a live migration passes as VIR_MIGRATE_PARAM_DEST_XML."""
    root = ET.fromstring(domain_xml)
    numatune = root.find("numatune")
    if numatune is None:
        numatune = ET.Element("numatune")
        root.insert(_after(root, ("vcpu", "currentMemory", "memory")), numatune)
    for child in list(numatune):
        numatune.remove(child)
    union = sorted({p for ns in nodesets for p in ns})
    ET.SubElement(numatune, "memory", {"mode": "strict", "nodeset": _ranges(union)})
    for v, ns in enumerate(nodesets):
        ET.SubElement(
            numatune, "memnode", {"cellid": str(v), "mode": "strict", "nodeset": _ranges(ns)}
        )
    for m in root.findall("devices/memory[@model='virtio-mem']"):
        node = int(m.findtext("target/node", "0"))
        mask = m.find("source/nodemask")
        if mask is not None and node < len(nodesets):
            mask.text = _ranges(nodesets[node])
    return ET.tostring(root, encoding="unicode")


def _after(root: ET.Element, tags: tuple[str, ...]) -> int:
    children = list(root)
    for tag in tags:
        for i, child in enumerate(children):
            if child.tag == tag:
                return i + 1
    return len(children)


def _ranges(ids: list[int]) -> str:
    return ",".join(str(i) for i in sorted(set(ids)))
