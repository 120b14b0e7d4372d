"""The libvirt backend through the real binding on libvirt's test driver (test:///default and a
custom node definition). What the test driver cannot do (virtio-mem updates, live migration)
is checked on the XML the agent would send, defined back into the test driver."""

from __future__ import annotations

import dataclasses
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from numa_balloon_agent.backends import libvirt_xml as lx
from numa_balloon_agent.steps import Step
from service.exports import to_libvirt_kvm_domain
from tests.exports.conftest import make_domain
from tests.libvirt_env import require_binding

NODE = """<node><cpu><mhz>2400</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets>
<cores>4</cores><threads>2</threads></cpu><memory>33554432</memory></node>"""


@pytest.fixture
def backend() -> Any:
    require_binding()
    from numa_balloon_agent.backends.libvirt import LibvirtBackend

    b = LibvirtBackend("test:///default")
    yield b
    b.close()


def _kvm_domain(k: int = 2) -> tuple[Any, str]:
    # test:///default is one driver per process: every test defines a domain of its own
    d = make_domain(k, size_mib=1024, ballooned_mib=256, name=f"agent-{uuid.uuid4().hex[:8]}")
    d = dataclasses.replace(d, uuid=str(uuid.uuid4()), block_mib=128, dynamic_min_mib=512)
    return d, to_libvirt_kvm_domain(d)


def test_discover_default_driver(backend: Any) -> None:
    body = backend.discover(name="kvm-1", reserved_mib=256)
    assert body["pnodes"] == [
        {"memory_mib": 2048, "reserved_mib": 256, "cpus": 8},
        {"memory_mib": 4096, "reserved_mib": 256, "cpus": 8},
    ]
    assert body["distances"] == [[10, 20], [20, 10]]  # no siblings in the XML: 10/20


def test_discover_custom_node_without_cells(tmp_path: Path) -> None:
    require_binding()
    from numa_balloon_agent.backends.libvirt import LibvirtBackend

    (tmp_path / "node.xml").write_text(NODE)
    b = LibvirtBackend(f"test://{tmp_path / 'node.xml'}")
    try:
        body = b.discover(name="flat", reserved_mib=0)
        assert body["pnodes"] == [{"memory_mib": 32768, "reserved_mib": 0, "cpus": 8}]
        assert body["distances"] == [[10]]
    finally:
        b.close()


def test_capabilities_with_siblings() -> None:
    caps = """<capabilities><host><topology><cells num='2'>
      <cell id='1'><memory unit='KiB'>4194304</memory><cpus num='1'><cpu id='1'/></cpus>
        <distances><sibling id='0' value='32'/><sibling id='1' value='10'/></distances></cell>
      <cell id='0'><memory unit='GiB'>2</memory><cpus num='2'><cpu id='0'/><cpu id='2'/></cpus>
        <distances><sibling id='0' value='10'/><sibling id='1' value='32'/></distances></cell>
    </cells></topology></host></capabilities>"""
    assert lx.host_topology(caps) == ([2048, 4096], [2, 1], [[10, 32], [32, 10]])


def test_free_memory_and_domains(backend: Any) -> None:
    assert len(backend.free_mib()) == 2
    reports = backend.domains()  # the driver's own one-cell "test" domain: its balloon
    assert reports and reports[0]["vnodes"][0]["index"] == 0


def test_balloon_path_sets_memory(backend: Any) -> None:
    domain, _ = _kvm_domain(1)
    root = ET.fromstring(to_libvirt_kvm_domain(domain))
    for tag in ("devices", "maxMemory"):
        element = root.find(tag)
        assert element is not None
        root.remove(element)
    cell = root.find("cpu/numa/cell")
    assert cell is not None
    cell.set("memory", str(1024 * 1024))
    dom = backend.conn.defineXML(ET.tostring(root, encoding="unicode"))
    dom.create()
    step = Step("s", domain.uuid, "balloon", "balloon", 0, 0, 256, 512, False)
    outcome = backend.apply(step, dry_run=False)
    assert not outcome.ack and outcome.ok and "setMemoryFlags(524288 KiB)" in outcome.detail
    assert dom.info()[2] == 512 * 1024
    reports = {r["domain_id"]: r["vnodes"] for r in backend.domains()}
    assert reports[domain.uuid] == [{"index": 0, "actual_mib": 512}]


def test_virtio_mem_update_xml_is_what_libvirt_accepts(backend: Any, tmp_path: Path) -> None:
    """The test driver cannot resize virtio-mem: the agent reports that as a failed step, and
    the device XML it sends is checked by defining a domain that carries it."""
    domain, xml = _kvm_domain(2)
    dom = backend.conn.defineXML(xml)
    lay = lx.layout(dom.XMLDesc(0))
    device = lay.devices[1]
    requested = lx.requested_kib(device, lay.boot_kib[1], 1024)
    assert requested == device.size_kib  # the whole span: boot + device
    assert lx.requested_kib(device, lay.boot_kib[1], 300) == 128 * 1024  # 44 MiB above: a block
    new = ET.fromstring(lx.device_update_xml(device, requested))
    root = ET.fromstring(xml)
    devices = root.find("devices")
    assert devices is not None
    devices.remove(devices.findall("memory")[1])
    devices.append(new)
    root.find("name").text = "updated"  # type: ignore[union-attr]
    root.remove(root.find("uuid"))  # type: ignore[arg-type]
    back = backend.conn.defineXML(ET.tostring(root, encoding="unicode"))
    assert lx.layout(back.XMLDesc(0)).devices[1].requested_kib == requested
    step = Step("s", domain.uuid, "plug", "settle", 1, 1, 256, 1024, True)
    outcome = backend.apply(step, dry_run=False)
    assert outcome.ack and not outcome.ok and outcome.detail.startswith("libvirt:")
    assert "updateDeviceFlags" in backend.apply(step, dry_run=True).detail


def test_destination_xml_rebinds_every_cell_and_device(backend: Any) -> None:
    domain, xml = _kvm_domain(2)
    moved = lx.destination_xml(xml, [[3], [1, 2]])
    root = ET.fromstring(moved)
    assert [m.get("nodeset") for m in root.findall("numatune/memnode")] == ["3", "1,2"]
    assert root.find("numatune/memory").get("nodeset") == "1,2,3"  # type: ignore[union-attr]
    assert [m.findtext("source/nodemask") for m in root.findall("devices/memory")] == ["3", "1,2"]
    backend.conn.defineXML(moved)  # libvirt accepts it as it is
    step = Step(
        "m", domain.uuid, "migrate", "migrate", None, None, 0, 0, None, [],
        {"host_id": "h", "host_name": "kvm-2", "nodesets": [[1], [0]]},
    )  # fmt: skip
    dom = backend.conn.lookupByUUIDString(domain.uuid)
    dom.create()
    live = backend.apply(step, dry_run=False)  # the test driver has no migration
    assert live.ack and not live.ok and "libvirt:" in live.detail
    assert "qemu+ssh://kvm-2/system" in backend.apply(step, dry_run=True).detail


def test_discover_command_prints_the_host_body() -> None:
    require_binding()
    import json
    import subprocess
    import sys

    argv = [sys.executable, "-m", "numa_balloon_agent", "discover", "--backend", "libvirt"]
    out = subprocess.run(
        [*argv, "--uri", "test:///default", "--name", "kvm-9", "--reserved-mib", "128"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert json.loads(out) == {
        "name": "kvm-9",
        "pnodes": [
            {"memory_mib": 2048, "reserved_mib": 128, "cpus": 8},
            {"memory_mib": 4096, "reserved_mib": 128, "cpus": 8},
        ],
        "distances": [[10, 20], [20, 10]],
    }
