"""The parts of `make e2e` that need no guest: reading the guest's console (its MemTotal, its
memory blocks, the guest agent's log), the headline, the kernel package's module order and boot
image, the guest image's cache key, the operator's additions to the domain definition, the apt
versions of the guest's Python and a migration plan's levels. The real guest itself is
`make e2e`."""

from __future__ import annotations

import dataclasses
import gzip
import lzma
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from e2e import definition, headline, userland
from e2e.console import Console, parse
from e2e.image import Layer, image_key
from e2e.kernel import Kernel, _decompressed_payload
from e2e.migration import _levels
from e2e.services import HostAgent
from numa_balloon_agent import cli as agent_cli
from service.exports.libvirt_domain import Definition, to_libvirt_kvm_domain
from tests.exports.conftest import _require_tool, make_domain


def test_console_reads_whole_lines_among_kernel_messages(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    console = Console(log)
    console.poll()  # no file yet: nothing, no error
    log.write_bytes(
        b"[    7.6] virtio_mem virtio0: plugged size: 0x0\r\n"
        b"nb-e2e: ready block_size_bytes=134217728 uptime=7.76\r\n"
        b"nb-e2e: meminfo node0=211312 node1=1891"  # the guest is still writing this line
    )
    console.poll()
    assert [line.kind for line in console.lines] == ["ready"]
    assert console.meminfo() is None
    with open(log, "ab") as f:
        f.write(b"24 uptime=7.86\n[    8.1] Built 2 zonelists nb-e2e: meminfo node0=3423")
        f.write(
            b"[    8.2] Policy zone: DMA32\nnb-e2e: meminfo node0=342384 node1=189124 uptime=8.3\n"
            b"nb-e2e: meminfo node0=342384 [ 8.4] a kernel message\n node1=189124 uptime=8.4\n"
        )
    console.poll()
    first = console.meminfo()
    assert first is not None and first.node_kib == (342384, 189124)  # cut lines are skipped
    with open(log, "ab") as f:
        f.write(b"nb-e2e: meminfo node0=342384 node1=189124 uptime=13.2\n")  # the 5 s tick
    console.poll()
    again = console.meminfo()
    assert again is not None and again.seen_at == first.seen_at  # unchanged since then
    assert console.first("ready") is not None
    assert console.first("ready").fields["block_size_bytes"] == "134217728"  # type: ignore[union-attr]


def test_a_line_names_its_kind_and_fields() -> None:
    line = parse("junk nb-e2e: insmod-failed module=virtio_mem.ko uptime=1.0", 5.0)
    assert line is not None and line.kind == "insmod-failed"
    assert line.fields == {"module": "virtio_mem.ko", "uptime": "1.0"} and line.seen_at == 5.0
    assert parse("[ 1.0] Run /init as init process") is None


def test_the_headline_is_the_issue_s_format_and_reads_back() -> None:
    h = headline.Headline(vnodes=2, resizes=6, converged_s=8.66, boot_s=21.04)
    text = str(h)
    assert text == (
        "e2e real-guest: vnodes=2 resizes=6 converged_s=8.7 guest_agent_ops=0 "
        "migration=skipped boot_s=21.0"
    )
    back = headline.parse(text)
    assert (back.vnodes, back.resizes, back.migration, back.guest_agent_ops) == (2, 6, "skipped", 0)
    with pytest.raises(ValueError, match="not an e2e headline"):
        headline.parse("e2e real-guest: skipped: no QEMU")


def _kernel(tmp_path: Path, dep: str, builtin: str = "") -> Kernel:
    modules = tmp_path / "lib" / "modules" / "6.1.0-9-amd64"
    modules.mkdir(parents=True)
    (modules / "modules.dep").write_text(dep)
    (modules / "modules.builtin").write_text(builtin)
    return Kernel("linux-image-6.1.0-9-amd64", "6.1.1-1", "6.1.0-9-amd64", tmp_path)


def test_modules_come_with_their_dependencies_first_and_once(tmp_path: Path) -> None:
    k = _kernel(
        tmp_path,
        "kernel/drivers/virtio/virtio_mem.ko: kernel/drivers/virtio/virtio.ko "
        "kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko "
        "kernel/drivers/virtio/virtio.ko\n"
        "kernel/drivers/virtio/virtio_pci_modern_dev.ko:\n"
        "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/virtio/virtio_ring.ko:\n",
        builtin="kernel/drivers/tty/serial/8250/8250.ko\n",
    )
    names = [p.name for p in k.module_files(["virtio_pci", "virtio-mem", "8250"])]
    assert names == [
        "virtio_pci_modern_dev.ko",
        "virtio_ring.ko",
        "virtio.ko",
        "virtio_pci.ko",
        "virtio_mem.ko",
    ]
    with pytest.raises(RuntimeError, match="has no module virtio_net"):
        k.module_files(["virtio_net"])


def test_the_elf_inside_a_bzimage_is_found() -> None:
    elf = b"\x7fELF" + bytes(range(256)) * 64
    setup = b"MZ" + b"\x00" * 1000  # the real-mode setup and decompressor stub
    assert _decompressed_payload(setup + lzma.compress(elf) + b"\x00" * 16) == elf
    assert _decompressed_payload(setup + gzip.compress(elf)) == elf
    assert _decompressed_payload(setup + lzma.compress(b"not an ELF")) is None
    assert _decompressed_payload(setup + b"\x28\xb5\x2f\xfd zstd") is None  # unknown: bzImage


def test_the_image_key_follows_every_layer() -> None:
    def layer(name: str, key: bytes) -> Layer:
        return Layer(name, key, lambda root: None)

    base = [layer("busybox", b"a"), layer("init", b"b")]
    assert image_key(base) == image_key([layer("busybox", b"a"), layer("init", b"b")])
    assert image_key(base) != image_key([layer("busybox", b"a"), layer("init", b"c")])
    assert image_key(base) != image_key([*base, layer("python", b"")])


def test_block_lines_give_the_kernels_states_and_every_change(tmp_path: Path) -> None:
    """`+` online, `-` offline, `~` going-offline; a block the device adds appears offline, one
    it takes back leaves (and was offline by then, even when no line caught it so)."""
    log = tmp_path / "console.log"
    log.write_text(
        "nb-e2e: blocks node0=0+,1+,32- node1=2+ uptime=1.0\n"
        "nb-e2e: blocks node0=0+,1+,32+ node1=2+ uptime=1.2\n"  # 32 onlined
        "nb-e2e: blocks node0=0+,1+,32~ node1=2+,38- uptime=1.4\n"  # 38 added offline
        "nb-e2e: blocks node0=0+,1+ node1=2+,38+ uptime=1.6\n"  # 32 gone, 38 onlined
        "nb-e2e: blocks node0=0+,1+ node1=2+,38+,39- uptime=1.8\n"
        "nb-e2e: blocks node0=0+,1+ node1=2+,38+ uptime=2.0\n"  # 39 left offline: the device's
        "nb-e2e: blocks node0=0+,1+ node1=2+ uptime=2.2\n"  # 38 offlined and taken back at once
        "nb-e2e: blocks node0=0+,1+,32+ node1=2+ uptime=2.4\n"  # 32 added and onlined at once
        "nb-e2e: blocks node0=0+,1+ node1=2+,3 uptime=2.6\n"  # cut short: skipped
    )
    console = Console(log)
    console.poll()
    assert console.transitions() == [
        (32, True),
        (38, True),
        (32, False),
        (38, False),
        (32, True),
    ]
    now = console.blocks()
    assert now is not None and now.online(1) == [2] and now.offline(0) == []


def test_agent_lines_are_read_and_a_truncated_console_is_read_anew(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_text(
        'nb-guest: {"event": "plug: 1 block(s) changed", "op": "plug", "changed": [38]}\n'
        'nb-guest: {"event": "unplug: 1 blo[  3.1] virtio_mem virtio1: plugged size\n'
        "nb-e2e: meminfo node0=100 node1=200 uptime=3.0\n"
    )
    console = Console(log)
    console.poll()
    assert console.agent[0]["changed"] == [38]
    assert console.agent[1]["unparsed"] is True  # a kernel message cut through it
    log.write_text("nb-e2e: meminfo node0=100 node1=300 uptime=0.5\n")  # a new QEMU, no append
    console.poll()
    now = console.meminfo()
    assert now is not None and now.node_kib == (100, 300)


def test_the_guest_agents_definition_validates_and_has_one_way_out(tmp_path: Path) -> None:
    """What the operator adds to the export: libvirt's own schema accepts it; the guest's only
    network is restricted with one forward, to the service on 127.0.0.1; the token reaches QEMU
    as a file of mode 0600 that the XML names (its value is not in it)."""
    tool = shutil.which("virt-xml-validate")
    schema = Path("/usr/share/libvirt/schemas/domain.rng")
    _require_tool(tool is not None and schema.exists(), "virt-xml-validate")
    assert tool is not None
    export = to_libvirt_kvm_domain(
        dataclasses.replace(make_domain(2), block_mib=128, dynamic_min_mib=512),
        definition=Definition(
            domain_type="qemu", kernel="/k", cmdline="console=ttyS0", serial_log="/c.log"
        ),
    )
    config = definition.write_agent_config(tmp_path / "cfg", "the-guest-token")
    xml = definition.with_guest_agent(export, service_port=41234, config=config)
    (tmp_path / "d.xml").write_text(xml)
    proc = subprocess.run([tool, str(tmp_path / "d.xml"), "domain"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the-guest-token" not in xml
    assert (tmp_path / "cfg" / "guest-token").stat().st_mode & 0o777 == 0o600
    root = ET.fromstring(xml)
    args = [a.get("value") for a in root.iter(f"{{{definition.QEMU_NS}}}arg")]
    netdev = args[args.index("-netdev") + 1]
    assert netdev is not None and "restrict=on" in netdev
    assert netdev.count("guestfwd=") == 1 and netdev.endswith("nc 127.0.0.1 41234")
    entries = {e.get("name"): e.get("file") for e in root.findall("sysinfo[@type='fwcfg']/entry")}
    assert entries == {
        "opt/org.numa-balloon/url": str(tmp_path / "cfg" / "url"),
        "opt/org.numa-balloon/guest-token": str(tmp_path / "cfg" / "guest-token"),
    }
    assert root.find("devices/serial/source").get("append") == "on"  # type: ignore[union-attr]


def test_apt_candidates_come_from_one_policy_call(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    policy = (
        "libc6:\n  Installed: 2.36-9+deb12u13\n  Candidate: 2.36-9+deb12u14\n"
        "  Version table:\n *** 2.36-9+deb12u14 500\n"
        "zlib1g:\n  Installed: (none)\n  Candidate: 1:1.2.13.dfsg-1\n"
    )

    def run(argv: list[str], **_: object) -> str:
        calls.append(argv)
        return policy

    monkeypatch.setattr(userland, "run", run)
    assert userland.candidates(["libc6", "zlib1g"]) == {
        "libc6": "2.36-9+deb12u14",
        "zlib1g": "1:1.2.13.dfsg-1",
    }
    assert calls == [["apt-cache", "policy", "libc6", "zlib1g"]]
    with pytest.raises(RuntimeError, match="no candidate for libgcc-s1"):
        userland.candidates(["libc6", "libgcc-s1"])


def test_a_plans_levels_before_its_migrate_step() -> None:
    plan = {
        "steps": [
            {"phase": "claim", "op": "claim", "vnode": None, "target_mib": None},
            {"phase": "prepare", "op": "unplug", "vnode": 1, "target_mib": 256},
            {"phase": "migrate", "op": "migrate", "vnode": None, "target_mib": 512},
            {"phase": "settle", "op": "plug", "vnode": 0, "target_mib": 512},
        ]
    }
    assert _levels(plan, "migrate", [256, 768]) == [256, 256]
    assert _levels(plan, "release", [256, 768]) == [512, 256]


def test_the_host_agents_command_line_takes_any_token(tmp_path: Path) -> None:
    """An admin token may begin with "-" (secrets.token_urlsafe): as a separate word argparse
    took it for an option and the agent exited ("--token: expected one argument")."""
    agent = HostAgent(
        tmp_path,
        url="http://127.0.0.1:1",
        admin_token="-Zk3_token",
        uri="qemu:///system?socket=/x",
        name="h",
        interval_s=1.0,
        migrate_uri="qemu+unix:///system?socket=/y",
    )
    args = agent_cli.parse(agent.argv[agent.argv.index("run") :])
    assert (args.token, args.migrate_uri) == ("-Zk3_token", "qemu+unix:///system?socket=/y")
