"""A complete ``<domain type='kvm'>`` with one virtio-mem device per vnode.

What the host agent manages on libvirt/KVM: each guest NUMA cell is split into boot memory (the
cell's ``memory``, never unplugged) and one virtio-mem device targeting that cell whose
``<requested>`` size the agent moves to follow the vnode's target. Per vnode ``v`` of span
``size_mib`` and block ``B`` (the domain's hotplug block, a power of two >= 2 MiB as virtio-mem
requires):

* boot = its share of ``dynamic_min_mib`` (which the guest always keeps), rounded down to a block,
  at least one block and at most the span; the device's ``<size>`` is the rest, so boot plus
  device size is the vnode's span (its SRAT entry);
* ``<requested>`` = the blocks the vnode's target needs above its boot memory, rounded up (DESIGN:
  memory is plugged in whole blocks; the balloon trims the rest, which is why ``currentMemory``
  is the exact target);
* a vnode of a single block has no device (virtio-mem cannot have size 0);
* ``<source><nodemask>`` binds the device's memory like the cell's ``<memnode>``: the pnodes
  that back the vnode, mode strict (see :mod:`service.exports.libvirt`).

``<memory>`` is the static maximum (libvirt counts the cells plus the devices), ``<maxMemory>``
the same with one slot per device (libvirt requires it once memory devices exist).

By default the domain has no boot source, no console, no disk and no network: the operator adds
them. :class:`Definition` asks for what a first boot needs where that fits in query parameters
(``domain_type``, a direct kernel boot, a serial log); with none of them the XML is unchanged.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Literal

from service.engine.floors import vnode_floor_mib
from service.exports.libvirt import _check_name, _numatune_element, _serialize
from service.exports.model import ExportDomain, ExportError, compress_ranges

__all__ = ["Definition", "boot_mib", "to_libvirt_kvm_domain"]

KIB_PER_MIB = 1024


def boot_mib(domain: ExportDomain) -> list[int]:
    """Boot memory per vnode (the cells' ``memory``); the rest of each span is its device."""
    block = domain.block_mib
    if block is None or domain.dynamic_min_mib is None:
        raise ExportError("a libvirt domain with virtio-mem needs the domain's block size")
    floors = vnode_floor_mib(
        [v.size_mib for v in domain.vnodes],
        dynamic_min_mib=domain.dynamic_min_mib,
        static_max_mib=domain.static_max_mib,
        block_mib=block,
    )
    return [int(f) for f in floors.tolist()]


def _kib(parent: ET.Element, tag: str, mib: int) -> None:
    ET.SubElement(parent, tag, {"unit": "KiB"}).text = str(mib * KIB_PER_MIB)


def _cpu_element(domain: ExportDomain, boot: list[int]) -> ET.Element:
    cpu = ET.Element("cpu")
    numa = ET.SubElement(cpu, "numa")
    for v, boot_v in zip(domain.vnodes, boot, strict=True):
        cell = ET.SubElement(numa, "cell", {"id": str(v.index)})
        if v.vcpus:
            cell.set("cpus", compress_ranges(v.vcpus))
        cell.set("memory", str(boot_v * KIB_PER_MIB))
        cell.set("unit", "KiB")
        distances = ET.SubElement(cell, "distances")
        for u, value in enumerate(v.distances):
            ET.SubElement(distances, "sibling", {"id": str(u), "value": str(value)})
    return cpu


def _devices(domain: ExportDomain, boot: list[int], block: int) -> ET.Element:
    devices = ET.Element("devices")
    for v, boot_v in zip(domain.vnodes, boot, strict=True):
        grow = v.size_mib - boot_v
        if grow <= 0:
            continue
        above = max(v.target_mib - boot_v, 0)
        requested = min(grow, -(-above // block) * block)
        memory = ET.SubElement(devices, "memory", {"model": "virtio-mem"})
        source = ET.SubElement(memory, "source")
        ET.SubElement(source, "nodemask").text = compress_ranges(v.placement_pnodes)
        target = ET.SubElement(memory, "target")
        _kib(target, "size", grow)
        ET.SubElement(target, "node").text = str(v.index)
        _kib(target, "block", block)
        _kib(target, "requested", requested)
    return devices


@dataclass(frozen=True, slots=True)
class Definition:
    """What the export adds to the domain when asked (each default leaves the XML as it was).

    ``domain_type``: ``kvm`` (hardware virtualization) or ``qemu`` (QEMU's own emulator, TCG,
    where there is no usable KVM); ``kernel``, ``initrd``, ``cmdline``: a direct kernel boot
    (``<os><kernel>``..., paths on the hypervisor host); ``serial_log``: the first serial port
    written to this file on the hypervisor host (the guest's console with ``console=ttyS0``).
    Paths and the command line are taken as given; the API checks their form.
    """

    domain_type: Literal["kvm", "qemu"] = "kvm"
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    serial_log: str | None = None

    def __post_init__(self) -> None:
        if self.kernel is None and (self.initrd is not None or self.cmdline is not None):
            raise ValueError("an initrd or a kernel command line goes with a kernel")


def _os_element(definition: Definition, arch: str) -> ET.Element:
    os_element = ET.Element("os")
    ET.SubElement(os_element, "type", {"arch": arch}).text = "hvm"
    for tag in ("kernel", "initrd", "cmdline"):
        value = getattr(definition, tag)
        if value is not None:
            ET.SubElement(os_element, tag).text = value
    return os_element


def _serial_element(path: str) -> ET.Element:
    serial = ET.Element("serial", {"type": "file"})
    ET.SubElement(serial, "source", {"path": path})
    ET.SubElement(serial, "target", {"port": "0"})
    return serial


def to_libvirt_kvm_domain(
    domain: ExportDomain, *, arch: str = "x86_64", definition: Definition | None = None
) -> str:
    """The whole domain, accepted by libvirt as it is (``virsh define``); ``definition`` adds
    what a boot needs (see :class:`Definition`)."""
    _check_name(domain.name)
    definition = definition or Definition()
    boot = boot_mib(domain)
    assert domain.block_mib is not None
    devices = _devices(domain, boot, domain.block_mib)
    slots = len(devices)  # one per virtio-mem device
    if definition.serial_log is not None:
        devices.append(_serial_element(definition.serial_log))
    root = ET.Element("domain", {"type": definition.domain_type})
    ET.SubElement(root, "name").text = domain.name
    ET.SubElement(root, "uuid").text = domain.uuid
    if slots:
        max_memory = ET.SubElement(root, "maxMemory", {"slots": str(slots), "unit": "KiB"})
        max_memory.text = str(domain.static_max_mib * KIB_PER_MIB)
    _kib(root, "memory", domain.static_max_mib)
    _kib(root, "currentMemory", domain.target_mib)
    ET.SubElement(root, "vcpu", {"placement": "static"}).text = str(domain.vcpu_count)
    root.append(_numatune_element(domain))
    root.append(_os_element(definition, arch))
    features = ET.SubElement(root, "features")
    ET.SubElement(features, "acpi")  # SRAT and SLIT reach the guest through ACPI
    ET.SubElement(features, "apic")
    root.append(_cpu_element(domain, boot))
    root.append(devices)
    return _serialize(root) + "\n"
