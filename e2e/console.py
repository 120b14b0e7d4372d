"""The guest's serial console, as the guest's own `/init` writes it (see `guest/init.sh`):
lines `nb-e2e: <kind> key=value ... uptime=<s>`, among the kernel's messages. The assertions of
the run read the guest kernel's per-node MemTotal from here, not the service's bookkeeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "nb-e2e: "


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


@dataclass
class Console:
    path: Path
    lines: list[Line] = field(default_factory=list)
    _offset: int = 0
    _partial: bytes = b""

    def poll(self) -> None:
        """Read what the guest wrote since the last call (whole lines only)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        now = time.monotonic()
        *complete, self._partial = (self._partial + data).split(b"\n")
        for raw in complete:
            line = parse(raw.decode(errors="replace"), now)
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
