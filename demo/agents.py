"""Simulated host agents and guest balloon drivers, each with its own token, over HTTP.

A host agent does what a daemon in dom0 would: it reports each pnode's free memory (the
simulated hypervisor's view) and carries out the host-side steps of its queue (the memory copy of
a migration, releasing the source, moving a block for a rebalance), acknowledging each.

A guest balloon driver only knows its own virtual topology: it reads its pools' targets and
pending plug/unplug operations from the guest API and moves each pool toward its target, at its
own pace, then reports the sizes it reached. Pool operations complete when the guest's report
shows them done, so the agents never acknowledge them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

Kind = Literal["ideal", "slow", "stuck"]
GUEST_OPS = ("plug", "unplug", "balloon")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def check(r: httpx.Response) -> Any:
    if r.status_code >= 400:
        raise RuntimeError(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}")
    return r.json() if r.content else None


@dataclass
class HostAgent:
    http: httpx.Client
    host_id: str
    name: str
    token: str
    admin_token: str
    acked: int = 0

    def heartbeat(self) -> None:
        """Report free memory per pnode (also the service's cue to sweep stuck drivers).

        The simulated hypervisor has exactly the memory the toolstack accounts for, so the
        report is read from the accounting; a real agent would ask Xen or the kernel.
        """
        acc = check(
            self.http.get(f"/v1/hosts/{self.host_id}/accounting", headers=bearer(self.admin_token))
        )
        pnodes = [{"index": p["index"], "free_mib": p["free_mib"]} for p in acc["pnodes"]]
        check(
            self.http.put(
                f"/v1/agent/hosts/{self.host_id}/observed",
                headers=bearer(self.token),
                json={"pnodes": pnodes},
            )
        )

    def work(self) -> int:
        """Carry out and acknowledge the host-side steps waiting in this host's queue."""
        steps = check(
            self.http.get(f"/v1/agent/hosts/{self.host_id}/steps", headers=bearer(self.token))
        )["items"]
        n = 0
        for s in steps:
            if s["op"] in GUEST_OPS and s["phase"] != "rebalance":
                continue  # the guest's balloon driver does these; its report completes them
            check(
                self.http.post(
                    f"/v1/agent/hosts/{self.host_id}/steps/{s['id']}/ack",
                    headers=bearer(self.token),
                    json={"ok": True, "detail": f"{self.name}: {s['op']} {s['mib']} MiB done"},
                )
            )
            n += 1
        self.acked += n
        return n


@dataclass
class GuestDriver:
    """A balloon driver: `ideal` reaches its targets at once, `slow` moves a few blocks per
    tick, `stuck` stops moving (but keeps reporting, like a wedged driver)."""

    http: httpx.Client
    name: str
    kind: Kind
    token: str
    domain_id: str
    rng: random.Random
    pools: dict[int, int] = field(default_factory=dict)  # vnode -> actual MiB
    reports: int = 0

    def tick(self) -> bool:
        """One pass of the driver; returns whether every pool is at its target."""
        view = check(self.http.get("/v1/guest/balloon", headers=bearer(self.token)))
        targets = {p["index"]: p["target_mib"] for p in view["vnodes"]}
        for v, target in targets.items():
            actual = self.pools.setdefault(v, target)  # booted with its initial targets
            self.pools[v] = self._move(actual, target)
        check(
            self.http.put(
                "/v1/guest/balloon",
                headers=bearer(self.token),
                json={"vnodes": [{"index": v, "actual_mib": a} for v, a in self.pools.items()]},
            )
        )
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
