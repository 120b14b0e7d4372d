"""Linux memory blocks in sysfs (Documentation/admin-guide/mm/memory-hotplug.rst), as a real
kernel (Debian's 6.1 under QEMU with virtio-mem, `make e2e`) shows them:

- `/sys/devices/system/memory/block_size_bytes`: the block size, hex without `0x`;
- `memoryN/state`: reads `online` or `offline` (`going-offline` meanwhile), never the zone;
  writing `offline` or `online_movable` changes it; writing the state a block is already in is
  refused (EINVAL);
- `memoryN/valid_zones`: the zones the block is in (online) or may go to (offline), e.g.
  `Normal Movable`; `none` for a block the kernel can never offline (holes, several zones);
- `/sys/devices/system/node/nodeX/memoryN`: links from each node to its blocks;
- `/proc/iomem`: the region of each virtio-mem device (`virtioN`), whose blocks come and go.

Which blocks are a vnode's: the service lays vnodes out one after the other from PFN 0; a real
guest's are not (QEMU puts each node's boot memory below 4 GiB and each virtio-mem device's
region above it). So the service's PFNs are read relative to the vnode's own span: the vnode's
k-th block is the node's k-th block in address order. Memory is plugged from the bottom of each
span and unplugged from its top (virtio-mem's order too), so the blocks a node has form the
bottom of its span.

The kernel refuses to offline a block it cannot empty (EBUSY: unmovable pages, e.g. boot memory
holding the kernel's own data) or that has holes (EINVAL): partial progress, reported as such.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from numa_balloon_client.programs.exits import ProgramError, UsageError

PAGE_BYTES = 4096
MIB = 1 << 20
_BLOCK = re.compile(r"^memory(\d+)$")
_MEMTOTAL = re.compile(r"^Node\s+\d+\s+MemTotal:\s+(\d+)\s*kB\s*$", re.MULTILINE)
#: A top-level /proc/iomem region a virtio-mem device claims (the driver names it after the
#: virtio device), e.g. "100000000-12fffffff : virtio0".
_VIRTIO_REGION = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) : virtio\d+$", re.MULTILINE)
#: errnos that mean the block went away meanwhile (its device unplugged it): not a refusal.
_GONE = (errno.ENOENT, errno.ENODEV)


@dataclass
class Progress:
    changed: list[int] = field(default_factory=list)
    already: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # block -> errno name
    missing: list[int] = field(default_factory=list)  # blocks (or span indexes) not there
    zones: dict[int, str] = field(default_factory=dict)  # block onlined -> its valid_zones

    def summary(self, op: str) -> str:
        parts = [f"{op}: {len(self.changed)} block(s) changed, {len(self.already)} already"]
        if self.refused:
            refused = ", ".join(f"memory{b} ({e})" for b, e in sorted(self.refused.items()))
            parts.append(f"kernel refused {refused}")
        if self.missing:
            parts.append(f"{len(self.missing)} block(s) absent")
        return "; ".join(parts)


@dataclass(frozen=True)
class Span:
    """The blocks a vnode's PFN ranges name on this guest: those the node has, and the span
    indexes it has no block for (not plugged by the hypervisor yet, or unplugged already)."""

    blocks: list[int]
    absent: list[int]


class UnknownNode(ProgramError):
    """The service's topology names a vnode this guest has no node for (exit 4: the guest
    was not started with the domain's NUMA layout)."""


class MemoryBlocks:
    def __init__(self, root: Path | str = "/", *, write_timeout_s: float = 15.0) -> None:
        self.memory = Path(root) / "sys/devices/system/memory"
        self.nodes = Path(root) / "sys/devices/system/node"
        self.iomem = Path(root) / "proc/iomem"
        self.write_timeout_s = write_timeout_s
        if not self.nodes.is_dir():
            raise UsageError(
                f"sysfs root {root}: {self.nodes} is not a directory (the root of a sysfs "
                "tree holds sys/devices/system/node; / in the guest)"
            )

    @property
    def available(self) -> bool:
        return (self.memory / "block_size_bytes").exists()

    def block_bytes(self) -> int:
        return int((self.memory / "block_size_bytes").read_text().strip(), 16)

    def _read(self, block: int, name: str) -> str | None:
        try:
            with open(self.memory / f"memory{block}" / name) as f:
                return f.read(256).strip("\0\n ")
        except OSError:
            return None

    def state(self, block: int) -> str | None:
        return self._read(block, "state")

    def zones(self, block: int) -> list[str]:
        """`valid_zones`: the block's zone when online, the zones it may join when offline."""
        return (self._read(block, "valid_zones") or "").split()

    def node_dir(self, node: int) -> Path:
        directory = self.nodes / f"node{node}"
        if not directory.is_dir():
            raise UnknownNode(
                f"vnode {node}: {directory} is not there; the guest must see the domain's "
                "vnodes as its NUMA nodes (start it from the service's export)"
            )
        return directory

    def node_blocks(self, node: int) -> list[int]:
        """The node's blocks in address order (block N covers [N, N + 1) * block size)."""
        directory = self.node_dir(node)
        return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _BLOCK.match(p.name)))

    def span_blocks(self, node: int, span_start_pfn: int, pfn_ranges: list[list[int]]) -> Span:
        """The blocks of `node` that the service's `pfn_ranges` of this vnode name, the vnode
        spanning PFNs from `span_start_pfn` in the service's layout (see the module doc)."""
        pages = self.block_bytes() // PAGE_BYTES
        have = self.node_blocks(node)
        indexes: set[int] = set()
        for start, end in pfn_ranges:
            first = max(start - span_start_pfn, 0) // pages
            last = -(-(end - span_start_pfn) // pages)
            indexes.update(range(first, last))
        ordered = sorted(indexes)
        return Span(
            blocks=[have[k] for k in ordered if k < len(have)],
            absent=[k for k in ordered if k >= len(have)],
        )

    def set_state(self, blocks: list[int], online: bool) -> Progress:
        """Online (into ZONE_MOVABLE, so the block can be unplugged again) or offline each block,
        recording the kernel's answer for each and, for a block onlined, the zone it is in."""
        progress = Progress()
        for b in blocks:
            current = self.state(b)
            if current is None:
                progress.missing.append(b)
                continue
            if current.startswith("online") if online else current in ("offline", "going-offline"):
                progress.already.append(b)  # going-offline: the kernel is offlining it now
                continue
            try:
                self.write_state(b, "online_movable" if online else "offline")
            except OSError as exc:
                if exc.errno in _GONE:
                    progress.missing.append(b)
                else:
                    progress.refused[b] = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                continue
            progress.changed.append(b)
            if online:
                progress.zones[b] = " ".join(self.zones(b))
        return progress

    def write_state(self, block: int, value: str) -> None:
        """One write to `memoryN/state`: the kernel answers it (OSError with its errno).

        Offlining migrates the block's pages away and retries "for a long time (or even
        forever), until aborted by the user" (the kernel's admin guide): a page it cannot move
        keeps the write from returning. The write is made by a child process, killed after
        `write_timeout_s` (a fatal signal aborts the offlining and the block stays online):
        ETIMEDOUT, and the agent goes on (a pending step is tried again next cycle)."""
        path = self.memory / f"memory{block}" / "state"
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; its exit code is the errno
            code = 0
            try:
                fd = os.open(path, os.O_WRONLY)
                os.write(fd, value.encode())
            except OSError as exc:
                code = exc.errno or 255
            finally:
                os._exit(code)
        deadline = time.monotonic() + self.write_timeout_s
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise OSError(errno.ETIMEDOUT, f"{path}: no answer in {self.write_timeout_s} s")
            time.sleep(0.02)
        code = os.waitstatus_to_exitcode(status)
        if code < 0:  # killed by someone else: the offlining was aborted
            raise OSError(errno.EINTR, f"{path}: the writer got signal {-code}")
        if code:
            raise OSError(code, os.strerror(code))

    def device_blocks(self) -> set[int]:
        """Blocks inside a virtio-mem device's region: the device holds them, online or not,
        until it unplugs them (then they leave sysfs)."""
        try:
            text = self.iomem.read_text()
        except OSError:
            return set()
        size = self.block_bytes()
        out: set[int] = set()
        for m in _VIRTIO_REGION.finditer(text):
            start, end = int(m.group(1), 16), int(m.group(2), 16) + 1
            out.update(range(start // size, end // size))
        return out

    def visible_mib(self, node: int) -> int | None:
        """What the guest kernel shows of the node: its MemTotal (whole MiB), None if unread."""
        try:
            m = _MEMTOTAL.search((self.node_dir(node) / "meminfo").read_text())
        except OSError:
            return None
        return None if m is None else int(m.group(1)) // 1024

    def node_mib(self, node: int) -> int:
        """The node's memory in blocks: online ones, and offline ones a virtio-mem device still
        holds (offlining them is only the guest's half of an unplug; the pool shrinks when the
        device takes them back). On a kernel without memory-block hotplug, the node's MemTotal."""
        directory = self.node_dir(node)
        if self.available:
            held = self.device_blocks()
            count = sum(
                1
                for b in self.node_blocks(node)
                if (self.state(b) or "").startswith("online") or b in held
            )
            return count * self.block_bytes() // MIB
        m = _MEMTOTAL.search((directory / "meminfo").read_text())
        return 0 if m is None else int(m.group(1)) // 1024
