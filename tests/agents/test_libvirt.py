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


class QemuDriverDevices:
    """A test-driver domain whose `updateDeviceFlags` for a virtio-mem device does what
    libvirt 9.0's QEMU driver does (the test driver has no such call): AFFECT_LIVE|AFFECT_CONFIG
    is refused with "memory not found" (seen on a real guest, issue 27); AFFECT_LIVE sets the
    running device's `<requested>` (kept here); AFFECT_CONFIG sets the saved definition's, which
    is defined back into the test driver, so libvirt's own checks of the device still run.
    Everything else is the real test-driver domain."""

    def __init__(self, dom: Any, libvirt: Any, *, config_error: str | None = None) -> None:
        self.dom = dom
        self.lv = libvirt
        self.config_error = config_error
        self.calls: list[tuple[str, int]] = []  # (flags, node) per call
        self.live_requested: dict[int, int] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.dom, name)

    def updateDeviceFlags(self, xml: str, flags: int) -> int:
        live, config = self.lv.VIR_DOMAIN_AFFECT_LIVE, self.lv.VIR_DOMAIN_AFFECT_CONFIG
        element = ET.fromstring(xml)
        node = int(element.findtext("target/node", "-1"))
        requested = lx.kib(element.find("target/requested"))
        self.calls.append(({live: "LIVE", config: "CONFIG"}.get(flags, str(flags)), node))
        if flags == live | config:
            raise self.lv.libvirtError("invalid argument: memory not found")
        if flags == live:
            self.live_requested[node] = requested
            return 0
        if self.config_error:
            raise self.lv.libvirtError(self.config_error)
        assert element.find("alias") is None, "the saved definition's device has no live alias"
        saved = ET.fromstring(self.dom.XMLDesc(self.lv.VIR_DOMAIN_XML_INACTIVE))
        for m in saved.findall("devices/memory[@model='virtio-mem']"):
            if m.findtext("target/node") == str(node):
                target = m.find("target/requested")
                assert target is not None
                target.set("unit", "KiB")
                target.text = str(requested)
        self.dom.connect().defineXML(ET.tostring(saved, encoding="unicode"))
        return 0


def _saved_requested(dom: Any, libvirt: Any) -> dict[int, int]:
    saved = lx.layout(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    return {n: d.requested_kib for n, d in saved.devices.items()}


def _qemu_domain(backend: Any, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> tuple[Any, Any]:
    libvirt = require_binding()
    domain, xml = _kvm_domain(2)
    dom = backend.conn.defineXML(xml)
    proxy = QemuDriverDevices(dom, libvirt, **kw)
    monkeypatch.setattr(backend, "_lookup", lambda _id: proxy)
    return domain, proxy


def test_a_persistent_running_domain_is_resized_live_then_in_its_saved_definition(
    backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 27 item 1: one call with LIVE|CONFIG fails for every plug and unplug of a
    persistent domain; two calls, LIVE then CONFIG, change both."""
    libvirt = require_binding()
    domain, dom = _qemu_domain(backend, monkeypatch)
    dom.create()
    step = Step("s", domain.uuid, "plug", "balloon", 1, 1, 256, 1024, True)
    outcome = backend.apply(step, dry_run=False)
    assert (outcome.ack, outcome.ok) == (False, True), outcome.detail
    assert dom.calls == [("LIVE", 1), ("CONFIG", 1)]
    assert dom.live_requested == {1: 768 * 1024}
    assert _saved_requested(dom, libvirt) == {0: 512 * 1024, 1: 768 * 1024}
    assert outcome.detail.count("updateDeviceFlags") == 2 and "AFFECT_CONFIG" in outcome.detail
    unplug = Step("u", domain.uuid, "unplug", "balloon", 0, 0, 512, 256, False)
    assert backend.apply(unplug, dry_run=False).ok
    assert dom.live_requested == {1: 768 * 1024, 0: 0}
    assert _saved_requested(dom, libvirt) == {0: 0, 1: 768 * 1024}


def test_a_transient_domain_is_resized_live_only_and_a_stopped_one_in_its_definition(
    backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    libvirt = require_binding()
    domain, dom = _qemu_domain(backend, monkeypatch)
    step = Step("s", domain.uuid, "plug", "balloon", 0, 0, 256, 1024, True)
    assert backend.apply(step, dry_run=False).ok  # defined, not running: the definition only
    assert dom.calls == [("CONFIG", 0)] and dom.live_requested == {}
    assert _saved_requested(dom, libvirt)[0] == 768 * 1024
    dom.create()
    dom.undefine()  # still running, now transient: nothing saved to follow
    assert not dom.isPersistent()
    dom.calls.clear()
    shrink = Step("u", domain.uuid, "unplug", "balloon", 0, 0, 512, 512, False)
    outcome = backend.apply(shrink, dry_run=False)
    assert outcome.ok and dom.calls == [("LIVE", 0)] and dom.live_requested == {0: 256 * 1024}
    assert "AFFECT_CONFIG" not in outcome.detail


def test_a_saved_definition_that_cannot_follow_leaves_the_live_resize_standing(
    backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live size is what the step is about (the report completes it); the saved
    definition's failure is said in the detail, not turned into a failed step."""
    domain, dom = _qemu_domain(backend, monkeypatch, config_error="disk full")
    dom.create()
    step = Step("s", domain.uuid, "plug", "balloon", 1, 1, 256, 1024, True)
    outcome = backend.apply(step, dry_run=False)
    assert (outcome.ack, outcome.ok) == (False, True)
    assert dom.calls == [("LIVE", 1), ("CONFIG", 1)] and dom.live_requested == {1: 768 * 1024}
    assert "the saved definition kept its size: disk full" in outcome.detail
    dry = backend.apply(step, dry_run=True).detail
    assert dry.count("updateDeviceFlags") == 2 and len(dom.calls) == 2  # dry run: no call


def test_a_balloon_step_on_a_virtio_mem_device_is_whole_blocks_and_acknowledged(
    backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 27 item 3: a `balloon` step (the part of a change below a block) became the same
    rounded-up `<requested>`, was left to a report that could never show it (the device holds
    whole blocks) and stayed pending: the domain went uncooperative. It is now acknowledged once
    the device is asked for the whole blocks its target needs."""
    domain, dom = _qemu_domain(backend, monkeypatch)
    dom.create()
    # vnode 0: boot 256 MiB, requested 512 MiB (768 MiB held). 700 MiB lies in the same block.
    same = Step("b", domain.uuid, "balloon", "balloon", 0, 0, 68, 700, False)
    outcome = backend.apply(same, dry_run=False)
    assert (outcome.ack, outcome.ok) == (True, True), outcome.detail
    assert "whole blocks" in outcome.detail and dom.calls == []
    # 383 MiB needs one block less above boot: the device is resized, and the step acked.
    lower = Step("c", domain.uuid, "balloon", "balloon", 0, 0, 129, 383, False)
    outcome = backend.apply(lower, dry_run=False)
    assert (outcome.ack, outcome.ok) == (True, True), outcome.detail
    assert dom.live_requested == {0: 128 * 1024} and "requested=131072 KiB" in outcome.detail


def test_a_restart_step_starts_the_defined_domain_and_says_what_an_undefined_one_needs(
    backend: Any,
) -> None:
    """A failover's `start` step (issue #26): the destination's definition is started; one the
    host does not have is a failed step that names the export to define it from."""
    domain, xml = _kvm_domain(2)
    dom = backend.conn.defineXML(xml)
    start = Step("r", domain.uuid, "start", "restart", None, None, 0, None, False)
    assert not dom.isActive()
    done = backend.apply(start, dry_run=False)
    assert (done.ack, done.ok) == (True, True) and dom.isActive()
    again = backend.apply(start, dry_run=False)  # a retried step finds it running: done
    assert again.ok and "already runs" in again.detail
    missing = Step("m", str(uuid.uuid4()), "start", "restart", None, None, 0, None, False)
    refused = backend.apply(missing, dry_run=False)
    assert (refused.ack, refused.ok) == (True, False)
    assert "export?format=libvirt-domain" in refused.detail
