"""One guest-agent cycle: read the pending pool operations, plug or unplug their blocks, and
report every pool's actual size (which is what completes the operations on the service)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from numa_balloon_client import Client
from numa_balloon_client.programs.loop import Backoff, run_cycles
from numa_balloon_guest.blocks import MemoryBlocks

log = logging.getLogger("numa_balloon_guest")


@dataclass
class GuestAgent:
    client: Client
    blocks: MemoryBlocks
    interval_s: float = 10.0
    dry_run: bool = False
    max_backoff_s: float = 300.0
    sleep: Callable[[float], None] = time.sleep
    vnodes: list[int] = field(default_factory=list)

    def cycle(self) -> dict[int, int]:
        if not self.vnodes:
            topo = self.client.guest_topology()
            self.vnodes = [v.index for v in topo.vnodes]
        view = self.client.guest_balloon()
        for op in view.pending:
            self._carry_out(op.model_dump(mode="json"))
        actual = {v: self.blocks.node_mib(v) for v in self.vnodes}
        if not self.dry_run:
            self.client.guest_report(actual)
        log.info("reported", extra={"actual_mib": actual})
        return actual

    def _carry_out(self, op: dict[str, Any]) -> None:
        kind = op["op"]
        if kind not in ("plug", "unplug") or not op.get("pfn_ranges"):
            log.info("left to the balloon driver", extra={"op": kind, "vnode": op["vnode"]})
            return
        blocks = self.blocks.blocks_of(op["pfn_ranges"])
        if self.dry_run:
            log.info("would", extra={"op": kind, "vnode": op["vnode"], "blocks": blocks})
            return
        progress = self.blocks.set_state(blocks, online=kind == "plug")
        log.log(
            logging.WARNING if progress.refused else logging.INFO,
            progress.summary(kind),
            extra={"vnode": op["vnode"], "refused": progress.refused},
        )

    def run(self, *, once: bool = False, cycles: int | None = None) -> int:
        backoff = Backoff(self.interval_s, self.max_backoff_s)
        return run_cycles(self.cycle, backoff, once=once, cycles=cycles, sleep=self.sleep)
