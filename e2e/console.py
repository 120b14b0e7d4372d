"""The guest's serial console, as the guest's own `/init` writes it (see `guest/init.sh`):
lines `nb-e2e: <kind> key=value ... uptime=<s>`, among the kernel's messages, and the guest
agent's JSON lines behind `nb-guest: `. The assertions of the run read the guest kernel's
per-node MemTotal and memory block states from here, not the service's bookkeeping."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "nb-e2e: "
AGENT_PREFIX = "nb-guest: "


@dataclass(frozen=True)
class Line:
    kind: str
    fields: dict[str, str]
    seen_at: float  # time.monotonic() when the reader found it


@dataclass(frozen=True)
class Meminfo:
    """The guest's MemTotal per NUMA node (KiB: the kernel's "kB")."""

    node_kib: tuple[int, ...]
    seen_at: float


def parse(text: str, seen_at: float = 0.0) -> Line | None:
    """One console line, or None when it is not the guest init's (a kernel message)."""
    at = text.find(PREFIX)
    if at < 0:
        return None
    words = text[at + len(PREFIX) :].split()
    if not words:
        return None
    fields = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    return Line(words[0], fields, seen_at)


@dataclass(frozen=True)
class Blocks:
    """The kernel's memory blocks per node: block number -> online (True), offline (False) or
    changing (None: `going-offline`)."""

    nodes: dict[int, dict[int, bool | None]]
    seen_at: float

    def online(self, node: int) -> list[int]:
        return sorted(b for b, on in self.nodes.get(node, {}).items() if on)

    def offline(self, node: int) -> list[int]:
        return sorted(b for b, on in self.nodes.get(node, {}).items() if on is False)


@dataclass
class Console:
    path: Path
    lines: list[Line] = field(default_factory=list)
    agent: list[dict[str, object]] = field(default_factory=list)  # the guest agent's log
    _offset: int = 0
    _partial: bytes = b""

    def poll(self) -> None:
        """Read what the guest wrote since the last call (whole lines only)."""
        try:
            with open(self.path, "rb") as f:
                if os.fstat(f.fileno()).st_size < self._offset:  # truncated: read it anew
                    self._offset, self._partial = 0, b""
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        now = time.monotonic()
        *complete, self._partial = (self._partial + data).split(b"\n")
        for raw in complete:
            text = raw.decode(errors="replace")
            event = parse_agent(text)
            if event is not None:
                self.agent.append(event)
                continue
            line = parse(text, now)
            if line is not None:
                self.lines.append(line)

    def first(self, kind: str) -> Line | None:
        return next((line for line in self.lines if line.kind == kind), None)

    def meminfo(self) -> Meminfo | None:
        """The latest MemTotal per node, `seen_at` when it took these values (init repeats an
        unchanged line every 5 s)."""
        latest: Meminfo | None = None
        for line in reversed(self.lines):
            nodes = _nodes(line)
            if nodes is None:
                continue
            if latest is not None and nodes != latest.node_kib:
                break
            latest = Meminfo(nodes, line.seen_at)
        return latest

    def blocks(self) -> Blocks | None:
        """The latest whole `blocks` line (`seen_at` when it took these values)."""
        latest: Blocks | None = None
        for line in reversed(self.lines):
            nodes = _blocks(line)
            if nodes is None:
                continue
            if latest is not None and nodes != latest.nodes:
                break
            latest = Blocks(nodes, line.seen_at)
        return latest

    def transitions(self) -> list[tuple[int, bool]]:
        """Every change of a block between online and offline in the kernel's `blocks` lines,
        in order: (block, now online). A block's device adds it offline
        (`memhp_default_state=offline`) and takes it back only once it is offline (virtio-mem
        with `unplug_online=0`), so between two lines a block that appeared online was onlined,
        and one seen online that is gone was offlined (and taken back)."""
        out: list[tuple[int, bool]] = []
        known: dict[int, bool] = {}
        first = True
        for line in self.lines:
            nodes = _blocks(line)
            if nodes is None:
                continue
            now = {b: on for blocks in nodes.values() for b, on in blocks.items()}
            for b, on in sorted(now.items()):
                if on is None:
                    continue  # changing: its next line says how it ended
                if (b in known and known[b] != on) or (b not in known and on and not first):
                    out.append((b, on))
                known[b] = on
            first = False
            out += [(b, False) for b, on in sorted(known.items()) if b not in now and on]
            known = {b: on for b, on in known.items() if b in now}  # gone: unplugged
        return out

    def wait(
        self, done: Callable[[Console], bool], *, timeout_s: float, what: str, poll_s: float = 0.1
    ) -> float:
        """Poll until `done(self)`; the seconds it took. TimeoutError names `what` and shows the
        end of the console."""
        start = time.monotonic()
        while True:
            self.poll()
            if done(self):
                return time.monotonic() - start
            if time.monotonic() - start > timeout_s:
                raise TimeoutError(f"guest: no {what} within {timeout_s:.0f} s\n{self.tail()}")
            time.sleep(poll_s)

    def tail(self, n: int = 15) -> str:
        try:
            text = self.path.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no console output at {self.path})"
        return "\n".join(f"  | {line}" for line in text.splitlines()[-n:])


def _nodes(line: Line) -> tuple[int, ...] | None:
    """The node sizes of a meminfo line; None for other lines and for a line a kernel message
    cut through (it is printed again on the next change or tick)."""
    if line.kind != "meminfo":
        return None
    try:
        float(line.fields["uptime"])  # written last: a line cut short has none
        nodes = sorted(
            (int(k.removeprefix("node")), int(v))
            for k, v in line.fields.items()
            if k.startswith("node")
        )
    except (KeyError, ValueError):
        return None
    if not nodes or [n for n, _ in nodes] != list(range(len(nodes))):
        return None
    return tuple(kib for _, kib in nodes)


def parse_agent(text: str) -> dict[str, object] | None:
    """A whole JSON line of the guest agent's log, or None (another line, or one a kernel
    message cut through)."""
    at = text.find(AGENT_PREFIX)
    if at < 0:
        return None
    try:
        event = json.loads(text[at + len(AGENT_PREFIX) :])
    except ValueError:
        return {"event": text[at + len(AGENT_PREFIX) :].strip(), "unparsed": True}
    return event if isinstance(event, dict) else None


def _blocks(line: Line) -> dict[int, dict[int, bool | None]] | None:
    """The nodes' blocks of a `blocks` line (`node0=0+,1+,32-`); None for other lines and
    for a line cut short."""
    if line.kind != "blocks" or "uptime" not in line.fields:
        return None
    out: dict[int, dict[int, bool | None]] = {}
    try:
        for key, value in line.fields.items():
            if not key.startswith("node"):
                continue
            node: dict[int, bool | None] = {}
            for item in filter(None, value.split(",")):
                if item[-1] not in "+-~":
                    return None
                node[int(item[:-1])] = None if item[-1] == "~" else item[-1] == "+"
            out[int(key.removeprefix("node"))] = node
    except ValueError:
        return None
    return out or None
