"""Simulated host agents and guest balloon drivers, each with its own token, over HTTP.

A host agent does what a daemon in dom0 would: it renews its host's lease, reports each pnode's
free memory (the simulated hypervisor's view) when it moved or the lease asks, and carries out
the host-side steps of its queue (the memory copy of a migration, releasing the source, moving a
block for a rebalance), acknowledging each.

A guest balloon driver only knows its own virtual topology: it reads its pools' targets and
pending plug/unplug operations from the guest API and moves each pool toward its target, at its
own pace, then reports the sizes it reached. Pool operations complete when the guest's report
shows them done, so the agents never acknowledge them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from numa_balloon_client import Client

Kind = Literal["ideal", "slow", "stuck"]
GUEST_OPS = ("plug", "unplug", "balloon")


@dataclass
class HostAgent:
    """`agent` speaks with the host's agent token; `admin` reads the accounting."""

    agent: Client
    admin: Client
    host_id: str
    name: str
    acked: int = 0
    seq: int = 0  # lease renewals so far
    last_free: list[int] | None = None
    reports: int = 0

    def heartbeat(self) -> None:
        """Renew the lease; report free memory per pnode when it moved, or when the lease's
        answer asks (a pending step: the report is also the service's cue to flag stuck
        drivers), as the real agent does.

        The simulated hypervisor has exactly the memory the toolstack accounts for, so the
        report is read from the accounting; a real agent would ask Xen or the kernel.
        """
        lease = self.agent.agent_lease(self.host_id, self.seq)
        self.seq += 1
        acc = self.admin.host_accounting(self.host_id)
        free = [p.free_mib for p in acc.pnodes]
        if lease.report or free != self.last_free:
            self.agent.agent_observed(
                self.host_id, [{"index": i, "free_mib": f} for i, f in enumerate(free)]
            )
            self.last_free = free
            self.reports += 1

    def pending(self) -> list[str]:
        """The domains with steps waiting in this host's queue."""
        return [s.domain_id for s in self.agent.agent_steps(self.host_id).items]

    def work(self) -> int:
        """Carry out and acknowledge the host-side steps waiting in this host's queue."""
        n = 0
        for s in self.agent.agent_steps(self.host_id).items:
            if s.op in GUEST_OPS and s.phase != "rebalance":
                continue  # the guest's balloon driver does these; its report completes them
            detail = f"{self.name}: {s.op} {s.mib} MiB done"
            self.agent.agent_ack(self.host_id, s.id, ok=True, detail=detail)
            n += 1
        self.acked += n
        return n


@dataclass
class GuestDriver:
    """A balloon driver: `ideal` reaches its targets at once, `slow` moves a few blocks per
    tick, `stuck` stops moving (but keeps reporting, like a wedged driver)."""

    guest: Client  # with the domain's guest token
    name: str
    kind: Kind
    domain_id: str
    rng: random.Random
    pools: dict[int, int] = field(default_factory=dict)  # vnode -> actual MiB
    reports: int = 0

    def tick(self) -> bool:
        """One pass of the driver; returns whether every pool is at its target."""
        view = self.guest.guest_balloon()
        targets = {p.index: p.target_mib for p in view.vnodes}
        for v, target in targets.items():
            actual = self.pools.setdefault(v, target)  # booted with its initial targets
            self.pools[v] = self._move(actual, target)
        self.guest.guest_report(self.pools)
        self.reports += 1
        return all(self.pools[v] == t for v, t in targets.items())

    def _move(self, actual: int, target: int) -> int:
        if self.kind == "ideal":
            return target
        if self.kind == "stuck" and self.reports > 0:
            return actual
        if self.kind == "stuck":
            return target
        step = self.rng.choice((128, 256))  # a few 128 MiB blocks per pass
        return actual + max(-step, min(step, target - actual))

    @property
    def total_mib(self) -> int:
        return sum(self.pools.values())
