"""The demo story, played over HTTP against a running numa-balloon.

1. Register four real machine shapes (1 node, 2 sockets, EPYC NPS4, 4-socket SNC4 with 16 nodes);
   each gets a host agent.
2. Derive the cluster's worst-case virtual topology and boot guests from it, each with a balloon
   driver: ideal, slow or stuck.
3. The 1-node host is full: squeeze it to admit a new guest. The stuck driver never gives its
   memory back and is flagged uncooperative; a second squeeze holds it and asks the others.
4. Migrate a guest from the 1-node host to the 16-node host with unplug/replug.
5. A guest shuts down on the full 2-socket host; rebalance moves blocks of the others where their
   virtual distances say they should be (AutoNUMA as ballooning).
6. Start migrating the stuck guest; its pools never shrink, so the migration is aborted: the
   claims are released and the source is restored.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from demo.agents import GuestDriver, HostAgent, Kind
from demo.machines import CLUSTER, Machine
from numa_balloon_client import Client, Conflict
from numa_balloon_client import models as m

TICK_S = 0.15

#: name, driver, host (None: the service picks the best host), dynamic min/max and target MiB.
GUESTS: tuple[tuple[str, Kind, str | None, int, int, int], ...] = (
    ("web", "ideal", "lab-1node", 4096, 16384, 8192),
    ("db", "slow", "lab-1node", 4096, 16384, 8192),
    ("batch", "stuck", "lab-1node", 4096, 16384, 8192),
    ("cache", "ideal", "lab-1node", 4096, 8192, 8192),
    ("search", "ideal", "dell-2socket", 4096, 16384, 12288),
    ("mail", "slow", "dell-2socket", 4096, 16384, 12288),
    ("ci", "ideal", "dell-2socket", 4096, 16384, 8192),
    ("build", "slow", None, 4096, 16384, 12288),
)
NEWCOMER: tuple[str, Kind, str | None, int, int, int] = (
    "analytics",
    "ideal",
    "lab-1node",
    4096,
    8192,
    8192,
)


@dataclass
class Progress:
    total: int
    out: TextIO = sys.stdout
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    def stage(self, title: str) -> Callable[[str], None]:
        self.done += 1
        width = 24
        filled = width * self.done // self.total
        bar = "#" * filled + "." * (width - filled)
        t0 = time.monotonic()
        self.out.write(f"[{bar}] {self.done}/{self.total} {title} ...")
        self.out.flush()

        def finish(result: str) -> None:
            self.out.write(f" {result} ({time.monotonic() - t0:.1f} s)\n")
            self.out.flush()

        return finish


class Story:
    def __init__(self, nb: Client, seed: int = 7, out: TextIO = sys.stdout):
        self.nb = nb  # the toolstack's client (admin token); agents and guests get their own
        self.rng = random.Random(seed)
        self.out = out
        self.agents: dict[str, HostAgent] = {}
        self.hosts: dict[str, m.HostCreated] = {}
        self.guests: dict[str, GuestDriver] = {}
        self.summary: dict[str, Any] = {}

    # -- toolstack calls -------------------------------------------------------------------
    def host_name(self, host_id: str | None) -> str:
        return next((n for n, h in self.hosts.items() if h.id == host_id), "?")

    def domain(self, name: str) -> m.DomainOut:
        return self.nb.get_domain(self.guests[name].domain_id)

    # -- the world turning -----------------------------------------------------------------
    def tick(self) -> None:
        for g in self.guests.values():
            g.tick()
        for a in self.agents.values():
            a.work()
            a.heartbeat()
        time.sleep(TICK_S)

    def run_until(self, cond: Callable[[], bool], timeout_s: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.tick()
            if cond():
                return True
        return False

    def converged(self, *names: str) -> bool:
        views = {n: self.domain(n) for n in names}
        return all(
            self.guests[n].pools.get(v.index) == v.target_mib
            for n, d in views.items()
            for v in d.vnodes
        )

    # -- the story ---------------------------------------------------------------------------
    def play(self) -> dict[str, Any]:
        started = time.monotonic()
        progress = Progress(total=8, out=self.out)
        self.register(progress.stage("register 4 hosts and their agents"))
        self.boot(progress.stage(f"boot {len(GUESTS)} guests from the worst-case template"))
        self.squeeze(progress.stage("squeeze lab-1node to admit a new guest"))
        self.migrate(progress.stage("migrate web: lab-1node -> xeon-4s-snc4 (unplug/replug)"))
        self.rebalance(progress.stage("search shuts down; rebalance dell-2socket"))
        self.abort(progress.stage("migrate the stuck guest, then abort"))
        self.settle(progress.stage("let every driver and agent settle"))
        self.audit(progress.stage("audit the accounting"))
        self.summary["elapsed_s"] = round(time.monotonic() - started, 1)
        self.print_summary()
        return self.summary

    def register(self, done: Callable[[str], None]) -> None:
        for machine in CLUSTER:
            self.add_host(machine)
        tpl = self.nb.derive_template()
        self.summary["template_vnodes"] = tpl.vnode_count
        total = sum(machine.capacity_mib for machine in CLUSTER)
        done(f"{len(CLUSTER)} hosts, {total // 1024} GiB, template {tpl.vnode_count} vnodes")

    def add_host(self, machine: Machine) -> None:
        host = self.nb.create_host(machine.body())
        self.hosts[machine.name] = host
        assert host.agent_token is not None, "a new host's agent token is shown once"
        agent = self.nb.with_token(host.agent_token)
        self.agents[machine.name] = HostAgent(agent, self.nb, host.id, machine.name)
        self.agents[machine.name].heartbeat()

    def boot_guest(self, spec: tuple[str, Kind, str | None, int, int, int]) -> GuestDriver:
        name, kind, host, lo, hi, target = spec
        body: dict[str, Any] = {
            "name": name,
            "template": "worst-case",
            "vcpus": 16,
            "policy": "faithful",
            "memory": {"dynamic_min_mib": lo, "dynamic_max_mib": hi, "target_mib": target},
        }
        if host is not None:
            body["host_id"] = self.hosts[host].id
        d = self.nb.create_domain(body)
        assert d.guest_token is not None, "a new domain's guest token is shown once"
        g = GuestDriver(self.nb.with_token(d.guest_token), name, kind, d.id, self.rng)
        self.guests[name] = g
        g.tick()
        return g

    def boot(self, done: Callable[[str], None]) -> None:
        for spec in GUESTS:
            self.boot_guest(spec)
        self.run_until(lambda: self.converged(*self.guests))
        where = {n: self.host_name(self.domain(n).host_id) for n in self.guests}
        self.summary["placement"] = where
        done(", ".join(f"{n}@{h}" for n, h in where.items()))

    def free_on(self, host: str) -> int:
        acc = self.nb.host_accounting(self.hosts[host].id)
        return sum(p.free_mib for p in acc.pnodes)

    def squeeze(self, done: Callable[[str], None]) -> None:
        host = "lab-1node"
        need = NEWCOMER[5]
        host_id = self.hosts[host].id
        first = self.nb.squeeze(host_id, {"keep_total_free_mib": need})
        self.summary["squeeze_gamma"] = first.gamma
        stuck = self.guests["batch"].domain_id
        # The stuck driver never shrinks: after uncooperative_after_s the heartbeat flags it.
        self.run_until(lambda: self.domain("batch").uncooperative, timeout_s=20)
        flagged = [n for n in self.guests if self.domain(n).uncooperative]
        self.summary["uncooperative"] = flagged
        freed_first = self.free_on(host)
        # Squeeze again: the uncooperative guest is held at its actual size.
        second = self.nb.squeeze(host_id, {"keep_total_free_mib": need})
        held = [d.domain_id for d in second.domains if d.held]
        self.summary["held_in_second_squeeze"] = held == [stuck]
        self.run_until(lambda: self.free_on(host) >= need)
        self.summary["free_before_admit_mib"] = self.free_on(host)
        self.boot_guest(NEWCOMER)
        self.summary["admitted"] = self.host_name(self.domain(NEWCOMER[0]).host_id)
        done(
            f"freed {freed_first} then {self.summary['free_before_admit_mib']} MiB; "
            f"flagged {', '.join(flagged) or 'nobody'}; {NEWCOMER[0]} admitted"
        )

    def drive_migration(self, mid: str, timeout_s: float = 20.0) -> m.MigrationOut:
        """Advance whenever the service lets us; the agents and drivers (ticked here, in this
        thread) do the steps, so the client's own wait_for_migration does not fit."""
        deadline = time.monotonic() + timeout_s
        mig = self.nb.get_migration(mid)
        while mig.state not in ("completed", "aborted", "failed") and time.monotonic() < deadline:
            try:
                mig = self.nb.advance_migration(mid)
                continue
            except Conflict:
                pass  # steps still pending
            self.tick()
        return mig

    def migrate(self, done: Callable[[str], None]) -> None:
        web, dest = self.guests["web"].domain_id, self.hosts["xeon-4s-snc4"].id
        plan = self.nb.plan_migration(web, dest, "replug")
        started = self.nb.start_migration(web, dest, "replug")
        final = self.drive_migration(started.id)
        self.run_until(lambda: self.converged("web") and self.no_pending_steps())
        self.summary["migration"] = {
            "state": final.state,
            "host": self.host_name(self.domain("web").host_id),
            "distortion_before": plan.distortion_before,
            "distortion_after": plan.distortion_after,
            "remote_fraction_before": plan.remote_fraction_before,
            "remote_fraction_after": plan.remote_fraction_after,
            "moved_mib": plan.moved_mib,
            "steps": len(plan.steps),
        }
        done(
            f"{final.state}: {len(plan.steps)} steps, distortion "
            f"{plan.distortion_before:g} -> {plan.distortion_after:g}"
        )

    def no_pending_steps(self) -> bool:
        stuck = self.guests["batch"].domain_id
        return all(d == stuck for a in self.agents.values() for d in a.pending())

    def rebalance(self, done: Callable[[str], None]) -> None:
        name = "dell-2socket"
        self.nb.delete_domain(self.guests.pop("search").domain_id)
        host_id = self.hosts[name].id
        dry = self.nb.rebalance(host_id, {"budget_mib": 8192, "dry_run": True})
        if not dry.moves:
            self.summary["rebalance"] = None
            done("nothing to gain")
            return
        real = self.nb.rebalance(host_id, {"budget_mib": 8192})
        self.run_until(self.no_pending_steps)
        self.summary["rebalance"] = {
            "host": name,
            "moves": len(real.moves),
            "moved_mib": real.moved_mib,
            "distortion_before": real.distortion_before,
            "distortion_after": real.distortion_after,
        }
        done(
            f"{name}: {len(real.moves)} block moves, {real.moved_mib} MiB, distortion "
            f"{real.distortion_before:g} -> {real.distortion_after:g}"
        )

    def abort(self, done: Callable[[str], None]) -> None:
        dest = "epyc-nps4"
        started = self.nb.start_migration(
            self.guests["batch"].domain_id, self.hosts[dest].id, "replug"
        )
        claimed = sum(c.mib for c in started.claims)
        final = self.drive_migration(started.id, timeout_s=3.0)  # the stuck pools never unplug
        stalled_in = final.state
        aborted = self.nb.abort_migration(started.id)
        acc = self.nb.host_accounting(self.hosts[dest].id)
        self.summary["abort"] = {
            "stalled_in": stalled_in,
            "state": aborted.state,
            "claimed_mib_during": claimed,
            "claimed_mib_after": sum(p.claimed_mib for p in acc.pnodes),
            "domain_host": self.host_name(self.domain("batch").host_id),
        }
        done(f"stalled in {stalled_in}, {aborted.state}; {claimed} MiB of claims released")

    def settle(self, done: Callable[[str], None]) -> None:
        movers = [n for n, g in self.guests.items() if g.kind != "stuck"]
        ok = self.run_until(lambda: self.converged(*movers))
        done("every cooperative driver at its targets" if ok else "timed out")

    def audit(self, done: Callable[[str], None]) -> None:
        problems = []
        claimed = 0
        for name, h in self.hosts.items():
            for p in self.nb.host_accounting(h.id).pnodes:
                claimed += p.claimed_mib
                if p.allocated_mib + p.claimed_mib > p.capacity_mib or p.free_mib < 0:
                    problems.append(f"{name} pnode {p.index} over capacity")
                if p.observed_free_mib is not None and p.observed_free_mib != p.free_mib:
                    problems.append(f"{name} pnode {p.index} drifted")
        self.summary["claimed_mib_total"] = claimed
        self.summary["audit_problems"] = problems
        cluster = self.nb.get_cluster().model_dump()
        self.summary["cluster"] = {
            k: cluster[k] for k in ("hosts", "domains", "capacity_mib", "allocated_mib", "free_mib")
        }
        done("clean" if not problems and claimed == 0 else "; ".join(problems) or "claims left")

    def print_summary(self) -> None:
        s = self.summary
        c = s["cluster"]
        mig = s["migration"]
        reb = s["rebalance"]
        ab = s["abort"]
        lines = [
            "",
            f"numa-balloon demo: {c['hosts']} hosts, {c['domains']} guests, "
            f"{c['allocated_mib'] // 1024} of {c['capacity_mib'] // 1024} GiB allocated, "
            f"{s['elapsed_s']} s",
            f"  squeeze      lab-1node freed {s['free_before_admit_mib']} MiB for analytics; "
            f"uncooperative: {', '.join(s['uncooperative']) or '-'}",
            f"  migration    web -> {mig['host']} {mig['state']}: distortion "
            f"{mig['distortion_before']:g} -> {mig['distortion_after']:g}, remote "
            f"{mig['remote_fraction_before']:.0%} -> {mig['remote_fraction_after']:.0%}",
            "  rebalance    "
            + (
                f"{reb['host']}: {reb['moves']} moves, distortion "
                f"{reb['distortion_before']:g} -> {reb['distortion_after']:g}"
                if reb
                else "nothing to gain"
            ),
            f"  abort        batch {ab['state']} in {ab['stalled_in']}; claims "
            f"{ab['claimed_mib_during']} -> {ab['claimed_mib_after']} MiB",
            f"  audit        {'clean' if not s['audit_problems'] else s['audit_problems']}; "
            f"claims left {s['claimed_mib_total']} MiB",
        ]
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
