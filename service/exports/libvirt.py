"""libvirt export: ``<cpu><numa>`` guest cells and ``<numatune>`` host binding.

``<cpu><numa>`` is what the guest sees (cells with vCPUs, size and the distance row, as in its
SRAT/SLIT); ``<numatune>`` is the toolstack's side (which host nodes back each cell). Following
libvirt's formatdomain documentation:

* ``<cell memory=... unit='MiB'>`` is the vnode's fixed span (``size_mib``), not its balloon target:
  the cell is the guest-physical range, ballooning happens inside it;
* ``<memnode cellid=N mode='strict' nodeset=...>``: one per cell, the nodeset being the pnodes
  that back that vnode (``0`` or ``0,3``). libvirt takes a nodeset, so a vnode spread over several
  pnodes is expressible here, unlike xl's vnuma. libvirt cannot state *how much* goes on each
  node, so the split itself is enforced by the balloon/hotplug agents, not by this XML;
* mode ``strict`` everywhere: our accounting (DESIGN.md, ``used[p] <= capacity_mib[p]``) assumes a
  vnode's memory is only on the pnodes we recorded; ``preferred`` would let the kernel fall back
  to other nodes silently and break that invariant;
* ``<memory mode='strict' nodeset=...>`` is the union, covering allocations not tied to a cell;
* a vnode without backing (ballooned to 0) is bound to its home pnode, so it still has a nodeset.

The document is built with :mod:`xml.etree.ElementTree`, which escapes text and attributes.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from service.exports.model import ExportDomain, ExportError, compress_ranges

__all__ = ["to_libvirt", "to_libvirt_domain"]

# Characters XML 1.0 cannot carry at all, escaped or not (ElementTree would emit them verbatim
# and produce a document no parser accepts), plus newline, which libvirt's name pattern forbids.
_ILLEGAL_NAME = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff\n]")

_INDENT = "  "


def _check_name(name: str) -> None:
    bad = _ILLEGAL_NAME.search(name)
    if bad is not None:
        raise ExportError(
            f"the domain name contains the character U+{ord(bad.group()):04X}, "
            "which a libvirt domain name cannot hold"
        )


def _cpu_element(domain: ExportDomain) -> ET.Element:
    cpu = ET.Element("cpu")
    numa = ET.SubElement(cpu, "numa")
    for v in domain.vnodes:
        cell = ET.SubElement(numa, "cell", {"id": str(v.index)})
        if v.vcpus:  # libvirt allows CPU-less (memory-only) cells; cpus='' would be invalid
            cell.set("cpus", compress_ranges(v.vcpus))
        cell.set("memory", str(v.size_mib))
        cell.set("unit", "MiB")
        distances = ET.SubElement(cell, "distances")
        for u, value in enumerate(v.distances):
            ET.SubElement(distances, "sibling", {"id": str(u), "value": str(value)})
    return cpu


def _numatune_element(domain: ExportDomain) -> ET.Element:
    numatune = ET.Element("numatune")
    every = sorted({p for v in domain.vnodes for p in v.placement_pnodes})
    ET.SubElement(numatune, "memory", {"mode": "strict", "nodeset": compress_ranges(every)})
    for v in domain.vnodes:
        ET.SubElement(
            numatune,
            "memnode",
            {
                "cellid": str(v.index),
                "mode": "strict",
                "nodeset": compress_ranges(v.placement_pnodes),
            },
        )
    return numatune


def _serialize(element: ET.Element, level: int = 0) -> str:
    ET.indent(element, space=_INDENT, level=level)
    return ET.tostring(element, encoding="unicode")


def to_libvirt(domain: ExportDomain) -> str:
    """The ``<cpu>`` and ``<numatune>`` elements, pretty printed, to paste into a ``<domain>``."""
    return _serialize(_cpu_element(domain)) + "\n" + _serialize(_numatune_element(domain)) + "\n"


def to_libvirt_domain(domain: ExportDomain, *, arch: str = "x86_64") -> str:
    """A minimal complete ``<domain type='kvm'>`` around the fragment.

    Exists so the export can be validated against libvirt's RelaxNG schema (virt-xml-validate)
    and used as a starting point: ``memory`` is the static max (libvirt requires the cells to add
    up to it), ``currentMemory`` the balloon target, ``vcpu`` the number of vCPUs.
    """
    _check_name(domain.name)
    root = ET.Element("domain", {"type": "kvm"})
    ET.SubElement(root, "name").text = domain.name
    ET.SubElement(root, "uuid").text = domain.uuid
    ET.SubElement(root, "memory", {"unit": "MiB"}).text = str(domain.static_max_mib)
    ET.SubElement(root, "currentMemory", {"unit": "MiB"}).text = str(domain.target_mib)
    ET.SubElement(root, "vcpu", {"placement": "static"}).text = str(domain.vcpu_count)
    os_element = ET.SubElement(root, "os")
    ET.SubElement(os_element, "type", {"arch": arch}).text = "hvm"
    root.append(_cpu_element(domain))
    root.append(_numatune_element(domain))
    return _serialize(root) + "\n"
