"""A host in memory, guests that behave, a clock that only moves when told: the rules of
`service.core` driven without a database.

The host and its domains are transient ORM rows (never added to a session); operations return
change sets, and `Sim.commit` absorbs them exactly as `service.db.apply.apply` does after its
writes, then checks the accounting invariant (no pnode committed beyond capacity).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum

import numpy as np

from service.core.balloon import observe, stalled
from service.db.accounting import I64, HostAccounting
from service.db.base import new_id
from service.db.changes import ChangeSet, Row, absorb
from service.db.models import Domain, Host, Pnode, Vnode
from service.settings import Settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = Settings(inactive_after_s=5.0, uncooperative_after_s=20.0, stuck_after_s=60.0)


class Driver(Enum):
    """How a guest's balloon driver follows its targets."""

    IDEAL = "ideal"  # at the target by the next report
    SLOW = "slow"  # 256 MiB per vnode per report
    STUCK = "stuck"  # never moves
    INTERMITTENT = "intermittent"  # moves like IDEAL, except while `paused`


@dataclass
class Guest:
    domain: Domain
    driver: Driver
    paused: bool = False

    def report(self) -> dict[int, int]:
        """What the driver says each pool holds now, having moved toward its target."""
        out = {}
        for vn in self.domain.vnodes:
            held = vn.target_mib if vn.actual_mib is None else vn.actual_mib
            out[vn.index] = self._toward(held, vn.target_mib)
        return out

    def _toward(self, held: int, target: int) -> int:
        if self.driver is Driver.STUCK or (self.driver is Driver.INTERMITTENT and self.paused):
            return held
        if self.driver is Driver.SLOW:
            step = min(256, abs(target - held))
            return held + step if target > held else held - step
        return target


def make_host(pnodes_mib: list[int], *, cpus: int = 8, remote: int = 20) -> Host:
    n = len(pnodes_mib)
    host = Host(
        id=new_id(),
        name="sim",
        state="active",
        distances=[[10 if i == j else remote for j in range(n)] for i in range(n)],
        drift_flagged=False,
        labels={},
        version=1,
    )
    host.pnodes = [
        Pnode(
            index=i,
            memory_mib=mib,
            reserved_mib=0,
            cpus=cpus,
            allocated_mib=0,
            claimed_mib=0,
            load_vcpus=0,
            observed_free_mib=None,
        )
        for i, mib in enumerate(pnodes_mib)
    ]
    return host


def make_domain(
    name: str,
    host: Host,
    sizes_mib: list[int],
    homes: list[int],
    *,
    dynamic_min_mib: int | None = None,
    backing_on: list[int] | None = None,
) -> tuple[Domain, I64]:
    """A running domain at its full size, vnode v backed on pnode `backing_on[v]` (default:
    its home), reported at that size by its guest."""
    k, p = len(sizes_mib), len(host.pnodes)
    total = sum(sizes_mib)
    domain = Domain(
        id=new_id(),
        name=name,
        host_id=host.id,
        state="running",
        policy="proportional",
        block_mib=128,
        static_max_mib=total,
        dynamic_min_mib=dynamic_min_mib if dynamic_min_mib is not None else total // 4,
        dynamic_max_mib=total,
        target_mib=total,
        distances=[[10 if i == j else 20 for j in range(k)] for i in range(k)],
        from_template=False,
        uncooperative=False,
        target_set_at=T0,
        last_progress_at=None,
        labels={},
        version=1,
    )
    domain.vnodes = [
        Vnode(
            index=v,
            size_mib=size,
            vcpus=[v],
            vcpu_count=1,
            target_mib=size,
            actual_mib=size,
            home_pnode=homes[v],
        )
        for v, size in enumerate(sizes_mib)
    ]
    backing = np.zeros((k, p), dtype=np.int64)
    for v, size in enumerate(sizes_mib):
        backing[v, (backing_on or homes)[v]] = size
    return domain, backing


@dataclass
class Sim:
    """One host, its guests and a fake clock."""

    accounting: HostAccounting
    guests: dict[str, Guest]
    now: datetime = T0
    settings: Settings = field(default_factory=lambda: SETTINGS)
    events: list[Row] = field(default_factory=list)

    @classmethod
    def of(cls, host: Host, domains: list[tuple[Domain, I64, Driver]]) -> Sim:
        accounting = HostAccounting(
            host=host,
            domains=[d for d, _, _ in domains],
            backing={d.id: b for d, b, _ in domains},
            claimed_mib=np.zeros(len(host.pnodes), dtype=np.int64),
        )
        accounting.check_fits()
        return cls(accounting=accounting, guests={d.id: Guest(d, drv) for d, _, drv in domains})

    def commit(self, changes: ChangeSet) -> None:
        absorb(self.accounting, changes, updated_at=self.now)
        self.events += changes.events
        self.accounting.check_fits()  # what `apply` refuses before writing the counters

    def tick(self, seconds: float = 1.0) -> None:
        """Time passes; every guest reports; the host's drivers are swept (the agent's cycle)."""
        self.now += timedelta(seconds=seconds)
        for guest in self.guests.values():
            changes, _ = observe(
                guest.domain, guest.report(), self.now, actor="guest", action="reported"
            )
            self.commit(changes)
        self.commit(stalled(self.accounting.domains, self.now, self.settings, actor="agent"))

    def free_mib(self) -> I64:
        a = self.accounting
        out: I64 = a.capacity_mib - a.claimed_mib - a.allocated_mib()
        return out

    def actions(self, action: str) -> list[Row]:
        return [e for e in self.events if e["action"] == action]

    def domain(self, name: str) -> Domain:
        return next(d for d in self.accounting.domains if d.name == name)
