"""Simulated host agents and ideal guest balloon drivers, on the client, in a thread.

They do what `demo/agents.py` does, so a migration driven by the CLI or the client completes:
each host agent acks its host-side steps, each guest reports its pools at their targets (which
completes the guest's plug/unplug/balloon steps).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

from numa_balloon_client import Client, NumaBalloonError

GUEST_OPS = ("plug", "unplug", "balloon")


@dataclass
class Sim:
    admin: Client
    agents: dict[str, str] = field(default_factory=dict)  # host id -> agent token
    guests: list[str] = field(default_factory=list)  # guest tokens
    fail_op: str | None = None  # ack this host-side op with ok=False
    acked: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def tick(self) -> None:
        for host_id, token in self.agents.items():
            agent = self.admin.with_token(token)
            for s in agent.agent_steps(host_id).items:
                if s.op in GUEST_OPS and s.phase != "rebalance":
                    continue
                agent.agent_ack(host_id, s.id, ok=s.op != self.fail_op, detail="sim")
                self.acked += 1
        for token in self.guests:
            guest = self.admin.with_token(token)
            view = guest.guest_balloon()
            guest.guest_report({p.index: p.target_mib for p in view.vnodes})

    def run(self, period_s: float = 0.1) -> None:
        while not self.stop.is_set():
            # A step may race with an advance; the next tick sees the new state.
            with contextlib.suppress(NumaBalloonError):
                self.tick()
            self.stop.wait(period_s)

    def __enter__(self) -> Sim:
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
