"""The parts of `make e2e` that need no guest: reading the guest's console, the headline, the
kernel package's module order and boot image, and the guest image's cache key. The real guest
itself is `make e2e`."""

from __future__ import annotations

import gzip
import lzma
from pathlib import Path

import pytest

from e2e import headline
from e2e.console import Console, parse
from e2e.image import Layer, image_key
from e2e.kernel import Kernel, _decompressed_payload


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
