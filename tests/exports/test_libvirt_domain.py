"""The complete ``<domain type='kvm'>`` export (format ``libvirt-domain``), defined in libvirt's
own test driver through ``virsh`` and through the Python binding, and read back."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from service.exports import ExportDomain, ExportError, to_libvirt_kvm_domain
from service.exports.libvirt_domain import Definition, boot_mib
from tests.exports.conftest import RequireTool, make_domain
from tests.libvirt_env import require_binding, virsh

KIB = 1024


def _domain(k: int, *, block: int = 128, size: int = 4096, ballooned: int = 1000) -> ExportDomain:
    d = make_domain(k, size_mib=size, ballooned_mib=ballooned)
    return dataclasses.replace(d, block_mib=block, dynamic_min_mib=d.static_max_mib // 4)


def _kib(element: ET.Element, path: str) -> int:
    node = element.find(path)
    assert node is not None and node.get("unit") == "KiB", path
    return int(node.text or "")


def check_devices(xml: str, domain: ExportDomain) -> None:
    """Every vnode: boot (cell) + device size = span, sizes and requests block-aligned."""
    root = ET.fromstring(xml)
    block_kib = (domain.block_mib or 0) * KIB
    cells = {int(c.get("id", "-1")): c for c in root.findall("cpu/numa/cell")}
    devices = {int(m.findtext("target/node", "-1")): m for m in root.findall("devices/memory")}
    assert all(m.get("model") == "virtio-mem" for m in devices.values())
    for v in domain.vnodes:
        boot_kib = int(cells[v.index].get("memory", "0"))
        assert cells[v.index].get("unit", "KiB") == "KiB"
        device = devices.get(v.index)
        grow_kib = 0 if device is None else _kib(device, "target/size")
        assert boot_kib + grow_kib == v.size_mib * KIB
        if device is None:
            continue
        requested = _kib(device, "target/requested")
        assert _kib(device, "target/block") == block_kib
        assert grow_kib % block_kib == 0 and requested % block_kib == 0
        assert 0 <= requested <= grow_kib
        # Plugged blocks cover the target above boot memory, no more than one block over it.
        above = max(v.target_mib * KIB - boot_kib, 0)
        assert above <= requested < above + block_kib or requested == grow_kib
    assert _kib(root, "memory") == domain.static_max_mib * KIB
    assert _kib(root, "currentMemory") == domain.target_mib * KIB


@pytest.mark.parametrize("k", [1, 2, 4, 16])
def test_virsh_defines_it_and_reads_it_back(k: int, tmp_path: Path) -> None:
    domain = _domain(k)
    xml = to_libvirt_kvm_domain(domain)
    check_devices(xml, domain)
    path = tmp_path / "domain.xml"
    path.write_text(xml)
    back = virsh(f"define {path}", f"dumpxml {domain.name}")
    back = back[back.index("<domain") :]
    check_devices(back, domain)
    root = ET.fromstring(back)
    assert root.get("type") == "kvm"
    assert len(root.findall("devices/memory[@model='virtio-mem']")) == k
    assert root.find("maxMemory") is not None
    assert [m.get("nodeset") for m in root.findall("numatune/memnode")] == [
        str(v.home_pnode) for v in domain.vnodes
    ]


def test_the_test_driver_rejects_a_misaligned_request(tmp_path: Path) -> None:
    """The semantic checks are really in the loop: a request off the block grid is refused."""
    xml = to_libvirt_kvm_domain(_domain(2))
    root = ET.fromstring(xml)
    requested = root.find("devices/memory/target/requested")
    assert requested is not None
    requested.text = str(int(requested.text or "0") + 4)
    path = tmp_path / "bad.xml"
    path.write_text(ET.tostring(root, encoding="unicode"))
    with pytest.raises(AssertionError, match="multiple of block size"):
        virsh(f"define {path}")


def test_binding_defines_it_and_sets_the_balloon() -> None:
    libvirt = require_binding()
    domain = _domain(4)
    conn = libvirt.open("test:///default")
    try:
        dom = conn.defineXML(to_libvirt_kvm_domain(domain))
        check_devices(dom.XMLDesc(0), domain)
        dom.create()
        dom.setMemoryFlags((domain.target_mib - 512) * KIB, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        assert dom.info()[2] == (domain.target_mib - 512) * KIB
    finally:
        conn.close()


def test_single_block_vnodes_have_no_device_and_boot_follows_dynamic_min(
    tmp_path: Path,
) -> None:
    domain = _domain(2, block=1024, size=1024, ballooned=0)
    assert boot_mib(domain) == [1024, 1024]
    xml = to_libvirt_kvm_domain(domain)
    assert ET.fromstring(xml).find("maxMemory") is None
    check_devices(xml, domain)
    (tmp_path / "d.xml").write_text(xml)
    virsh(f"define {tmp_path / 'd.xml'}")
    bigger = dataclasses.replace(_domain(2, size=8192), dynamic_min_mib=8192)
    assert boot_mib(bigger) == [4096, 4096]  # half of each span is the guaranteed floor


def test_needs_the_block_size() -> None:
    with pytest.raises(ExportError, match="block size"):
        to_libvirt_kvm_domain(make_domain(2))


BOOT = Definition(
    domain_type="qemu",
    kernel="/var/lib/nb/vmlinuz-6.1",
    initrd="/var/lib/nb/initrd.gz",
    cmdline="console=ttyS0 memhp_default_state=online_movable a=<b>&c",
    serial_log="/var/log/nb/console.log",
)


def _tags(root: ET.Element, path: str) -> list[str]:
    element = root.find(path)
    assert element is not None, path
    return [child.tag for child in element]


def test_the_default_definition_adds_nothing() -> None:
    """No option: no boot source, no console, type kvm (what the operator completes)."""
    domain = _domain(2)
    xml = to_libvirt_kvm_domain(domain)
    assert xml == to_libvirt_kvm_domain(domain, definition=Definition())
    root = ET.fromstring(xml)
    assert root.get("type") == "kvm"
    assert _tags(root, "os") == ["type"]
    assert _tags(root, "devices") == ["memory", "memory"]


def test_a_definition_that_boots_defines_and_validates(
    tmp_path: Path, require_tool: RequireTool
) -> None:
    domain = _domain(2)
    xml = to_libvirt_kvm_domain(domain, definition=BOOT)
    check_devices(xml, domain)
    tool = shutil.which("virt-xml-validate")
    require_tool(tool is not None and shutil.which("xmllint") is not None, "virt-xml-validate")
    path = tmp_path / "domain.xml"
    path.write_text(xml)
    proc = subprocess.run([str(tool), str(path), "domain"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    back = virsh(f"define {path}", f"dumpxml {domain.name}")
    root = ET.fromstring(back[back.index("<domain") :])
    assert root.get("type") == "qemu"
    assert root.findtext("os/kernel") == BOOT.kernel
    assert root.findtext("os/initrd") == BOOT.initrd
    assert root.findtext("os/cmdline") == BOOT.cmdline  # escaped on the way, intact back
    serial = root.find("devices/serial")
    assert serial is not None and serial.get("type") == "file"
    assert serial.find("source").get("path") == BOOT.serial_log  # type: ignore[union-attr]
    max_memory = root.find("maxMemory")  # one slot per virtio-mem device, not per device
    assert max_memory is not None and max_memory.get("slots") == "2"


def test_a_kernel_alone_boots_and_an_initrd_needs_one() -> None:
    kernel_only = Definition(kernel="/boot/vmlinuz")
    root = ET.fromstring(to_libvirt_kvm_domain(_domain(1), definition=kernel_only))
    assert _tags(root, "os") == ["type", "kernel"]
    with pytest.raises(ValueError, match="goes with a kernel"):
        Definition(initrd="/boot/initrd.img")
    with pytest.raises(ValueError, match="goes with a kernel"):
        Definition(cmdline="console=ttyS0")
