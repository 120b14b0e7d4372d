"""One guest-agent cycle: read the pending pool operations, plug or unplug their blocks, bring
online the blocks each pool's target plugs, and report every pool's actual size (which, with the
host agent's view of the hypervisor, is what completes the operations on the service).

On a guest whose hypervisor plugs memory itself (virtio-mem), a `plug` step may be completed by
the hypervisor's report before this agent saw it; the blocks it added then wait offline (with
`memhp_default_state=offline`) until the pool's `plugged_blocks` bring them online here."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from numa_balloon_client import Client
from numa_balloon_client.programs.loop import Backoff, run_cycles
from numa_balloon_guest.blocks import MemoryBlocks, Progress

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
    spans: dict[int, int] = field(default_factory=dict)  # vnode -> its first PFN (service's)

    def cycle(self) -> dict[int, int]:
        if not self.vnodes:
            topo = self.client.guest_topology()
            self.vnodes = [v.index for v in topo.vnodes]
            self.spans = {
                v.index: min((r.start_pfn for r in v.memranges), default=0) for v in topo.vnodes
            }
        view = self.client.guest_balloon()
        for op in view.pending:
            self._carry_out(op.model_dump(mode="json"))
        for pool in view.vnodes:
            self._online_plugged(pool.index, pool.plugged_blocks)
        actual = {v: self.blocks.node_mib(v) for v in self.vnodes}
        seen = {v: self.blocks.visible_mib(v) for v in self.vnodes}
        visible = {v: mib for v, mib in seen.items() if mib is not None}
        if not self.dry_run:
            self.client.guest_report(actual, visible)
        log.info("reported", extra={"actual_mib": actual, "visible_mib": visible})
        return actual

    def _carry_out(self, op: dict[str, Any]) -> None:
        kind, vnode = op["op"], op["vnode"]
        if kind not in ("plug", "unplug") or not op.get("pfn_ranges"):
            log.info("left to the balloon driver", extra={"op": kind, "vnode": vnode})
            return
        span = self.blocks.span_blocks(vnode, self.spans.get(vnode, 0), op["pfn_ranges"])
        if self.dry_run:
            log.info("would", extra={"op": kind, "vnode": vnode, "blocks": span.blocks})
            return
        progress = self.blocks.set_state(span.blocks, online=kind == "plug")
        self._log(kind, vnode, progress, not_there=span.absent)

    def _online_plugged(self, vnode: int, plugged_blocks: int) -> None:
        """The bottom `plugged_blocks` of the vnode's span are plugged: any of them the node has
        offline (added by the hypervisor, its step already completed) is brought online."""
        below = self.blocks.node_blocks(vnode)[:plugged_blocks]
        offline = [b for b in below if self.blocks.state(b) == "offline"]
        if not offline:
            return
        if self.dry_run:
            log.info("would", extra={"op": "plug", "vnode": vnode, "blocks": offline})
            return
        self._log("plug", vnode, self.blocks.set_state(offline, online=True))

    def _log(
        self, kind: str, vnode: int, progress: Progress, not_there: list[int] | None = None
    ) -> None:
        """One line per operation that changed a block or was refused (the kernel's errno per
        block; `not_there`: span indexes the node has no block for yet): what `make e2e`
        counts and checks against the kernel's own block states."""
        if not (progress.changed or progress.refused):
            return
        log.log(
            logging.WARNING if progress.refused else logging.INFO,
            progress.summary(kind),
            extra={
                "op": kind,
                "vnode": vnode,
                "changed": progress.changed,
                "refused": progress.refused,
                "zones": progress.zones,
                "absent": progress.missing,
                "span_indexes_not_there": not_there or [],
            },
        )

    def run(self, *, once: bool = False, cycles: int | None = None) -> int:
        backoff = Backoff(self.interval_s, self.max_backoff_s)
        return run_cycles(self.cycle, backoff, once=once, cycles=cycles, sleep=self.sleep)
