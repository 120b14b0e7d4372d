"""What happens to the real guest, phase by phase, through the service's API only:

1. the host agent discovers the host and registers it (its pnodes are libvirt's cells);
2. a domain with two vnodes is created on it, defined in libvirt from the service's own
   `libvirt-domain` export (persistent, the default) with what the operator adds for the guest
   agent (`e2e.definition`), and booted; the guest agent in the guest starts and reports;
3. its targets change: per-vnode targets (`PUT .../target`, one vnode grows while the other
   shrinks), a total target (every device fully plugged), a squeeze of the host; each time the
   host agent sets the virtio-mem devices' `<requested>` and the guest agent onlines the blocks
   the device added or offlines the blocks the service named (the guest kernel runs with
   `memhp_default_state=offline virtio_mem.unplug_online=0`: neither happens without it), the
   guest kernel's nodes change, both agents' reports carry the pools' sizes, and the service's
   accounting converges to the targets;
4. an unplug the guest cannot honour (`e2e.stuck`);
5. the guest moves to a second host of another shape, unplug/replug (`e2e.migration`).

Each phase asserts on what the guest kernel printed (its per-node MemTotal, its memory blocks),
on libvirt's live and saved definitions and on the service.
"""

from __future__ import annotations

import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from e2e import definition
from e2e.console import Console
from e2e.daemons import binding
from e2e.headline import Headline
from e2e.services import HostAgent
from numa_balloon_client import Client
from numa_balloon_client._core import Call, as_text, query
from numa_balloon_client.ops import domain_path

KIB_PER_MIB = 1024
BLOCK_MIB = 128  # the guest's memory block on x86-64: one virtio-mem block per memory block
VNODE_MIB = 1024
DYNAMIC_MIN_MIB = 512  # boot memory: 256 MiB per vnode, never unplugged
#: Hot-plugged blocks stay offline until the guest agent onlines them, and virtio-mem takes back
#: only blocks the guest offlined: the guest agent is the guest's half of every plug and unplug.
CMDLINE = "console=ttyS0 memhp_default_state=offline virtio_mem.unplug_online=0"
BOOT_TIMEOUT_S = 300.0  # TCG on a shared machine: ~8 s when quiet
AGENT_TIMEOUT_S = 300.0  # Python under TCG: its first report ~20 s after init when quiet
STEP_TIMEOUT_S = 120.0


def level(target_mib: int) -> int:
    """What a vnode holds at a target: whole blocks (virtio-mem plugs no less), rounded up."""
    return -(-target_mib // BLOCK_MIB) * BLOCK_MIB


class StoryFailed(AssertionError):
    """The guest, libvirt or the service did not do what the story expects."""


@dataclass(frozen=True)
class Resize:
    """One change of the service's targets and what the guest and the service did with it."""

    label: str
    before_mib: tuple[int, ...]  # the vnodes' targets before
    after_mib: tuple[int, ...]
    guest_delta_kib: tuple[int, ...]  # the guest's MemTotal change per node
    guest_s: float  # until the guest's nodes showed it
    converged_s: float  # until the service's accounting was at the targets

    @property
    def changed(self) -> int:
        return sum(a != b for a, b in zip(self.before_mib, self.after_mib, strict=True))


@dataclass
class Outcome:
    vnodes: int = 0
    boot_s: float = 0.0
    resizes: list[Resize] = field(default_factory=list)
    guest_agent_ops: int = 0
    migration: Literal["ok", "skipped"] = "skipped"
    agent_s: float = 0.0  # from starting the domain to the guest agent's first report
    retries: int = 0  # failed pool steps the service issued again (issue 27, item 2)

    def headline(self) -> Headline:
        return Headline(
            vnodes=self.vnodes,
            resizes=sum(r.changed for r in self.resizes),
            converged_s=max((r.converged_s for r in self.resizes), default=0.0),
            boot_s=self.boot_s,
            guest_agent_ops=self.guest_agent_ops,
            migration=self.migration,
        )


def wait_for(
    check: Callable[[], str | None], *, timeout_s: float, what: str, poll_s: float = 0.2
) -> float:
    """Poll `check` (None when satisfied, else why not) until it passes; the seconds it took."""
    start = time.monotonic()
    while True:
        why = check()
        if why is None:
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise StoryFailed(f"{what}: not within {timeout_s:.0f} s: {why}")
        time.sleep(poll_s)


@dataclass
class Story:
    admin: Client
    conn: Any  # a libvirt connection to the private daemon
    agent: HostAgent
    workdir: Path
    kernel: Path
    initrd: Path
    service_port: int
    say: Callable[[str], None] = print
    outcome: Outcome = field(default_factory=Outcome)
    console: Console | None = None
    host_id: str = ""
    domain_id: str = ""
    agent_client: Client | None = None
    clients: list[Client] = field(default_factory=list)
    all_agents: list[HostAgent] = field(default_factory=list)
    last_steps: list[str] = field(default_factory=list)  # the last resize's, as the agent did

    def play(self) -> Outcome:
        self.register()
        self.define_and_boot()
        self.retarget_per_vnode()
        self.grow_to_dynamic_max()
        self.squeeze()
        self.off_grid_with_a_retry()
        self.check_saved_definition()
        return self.outcome

    def count_agent_ops(self) -> int:
        """Block state changes in the guest: each change between online and offline the
        kernel's block lines show (with `memhp_default_state=offline` and `unplug_online=0`
        only the guest agent makes them), each one the agent's log also claims."""
        console = self.serial()
        console.poll()
        kernel = sorted(console.transitions())
        claimed = sorted(
            (int(b), e.get("op") == "plug")
            for e in console.agent
            for b in e.get("changed", []) or []  # type: ignore[attr-defined]
        )
        cut = [e for e in console.agent if e.get("unparsed")]
        if (claimed != kernel and not cut) or not set(claimed) <= set(kernel):
            raise StoryFailed(
                f"the guest agent says it changed {claimed} (block, online); the kernel's "
                f"blocks show {kernel}"
            )
        self.outcome.guest_agent_ops = len(kernel)
        return len(kernel)

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def agents(self) -> list[HostAgent]:
        """Every host agent of the run (each must stay alive)."""
        return self.all_agents or [self.agent]

    def moved_to(self, conn: Any, agent: HostAgent, host_id: str, agent_token: str) -> None:
        """The domain now runs on another host: read its devices, steps and accounting there."""
        self.conn, self.agent, self.host_id = conn, agent, host_id
        self.agent_client = Client(str(self.admin.http.base_url), agent_token)
        self.clients.append(self.agent_client)

    # --- 1. the host ---------------------------------------------------------------------------

    def register(self) -> None:
        def registered() -> str | None:
            self.agent.check_alive()
            state = self.agent.state()
            return None if state else "no agent state yet"

        wait_for(registered, timeout_s=60, what="the host agent registering the host")
        state = self.agent.state()
        assert state is not None
        self.host_id = str(state["host_id"])
        self.agent_client = Client(str(self.admin.http.base_url), str(state["agent_token"]))
        self.clients.append(self.agent_client)
        host = self.admin.get_host(self.host_id)
        cells = ET.fromstring(self.conn.getCapabilities()).findall("host/topology/cells/cell")
        if len(host.pnodes) != max(len(cells), 1):
            raise StoryFailed(f"{len(host.pnodes)} pnodes registered, libvirt has {len(cells)}")
        self.say(
            f"host {host.name}: {len(host.pnodes)} pnode(s), "
            f"{sum(p.memory_mib for p in host.pnodes)} MiB, registered by the agent"
        )

    # --- 2. the domain -------------------------------------------------------------------------

    def define_and_boot(self) -> None:
        body = {
            "name": f"e2e-{uuid.uuid4().hex[:8]}",
            "host_id": self.host_id,
            "block_mib": BLOCK_MIB,
            "policy": "explicit",
            "vnode_targets_mib": [512, 384],
            "memory": {
                "dynamic_min_mib": DYNAMIC_MIN_MIB,
                "dynamic_max_mib": 2 * VNODE_MIB,
                "target_mib": 896,
            },
            "vnodes": [
                {"size_mib": VNODE_MIB, "vcpus": [0], "distances": [10, 20]},
                {"size_mib": VNODE_MIB, "vcpus": [1], "distances": [20, 10]},
            ],
        }
        created = self.admin.create_domain(body)
        self.domain_id = created.id
        self.outcome.vnodes = len(created.vnodes)
        console_log = self.workdir / "console.log"
        xml = self.admin.run(
            Call(
                "GET",
                f"{domain_path(created.id)}/export",
                as_text,
                params=query(
                    format="libvirt-domain",
                    domain_type="qemu",  # TCG: KVM here is a software hypervisor (see docs)
                    kernel=str(self.kernel),
                    initrd=str(self.initrd),
                    cmdline=CMDLINE,
                    serial_log=str(console_log),
                ),
            )
        )
        # What the operator adds: the guest's network and its agent's URL and token.
        config = definition.write_agent_config(
            self.workdir / "guest-config", str(created.guest_token)
        )
        xml = definition.with_guest_agent(xml, service_port=self.service_port, config=config)
        (self.workdir / "domain.xml").write_text(xml)
        dom = self.conn.defineXML(xml)
        if not dom.isPersistent():
            raise StoryFailed("the exported domain was defined but is not persistent")
        self.console = Console(console_log)
        start = time.monotonic()
        dom.create()
        started_s = time.monotonic() - start
        self.console.wait(
            lambda c: c.meminfo() is not None, timeout_s=BOOT_TIMEOUT_S, what="init's meminfo"
        )
        self.outcome.boot_s = time.monotonic() - start
        init = self.console.first("init")
        ready = self.console.first("ready")
        param = self.console.first("virtio_mem")
        if param is None or param.fields.get("unplug_online") != "N":
            raise StoryFailed(f"virtio_mem's unplug_online is not N in the guest: {param}")
        block = int(ready.fields.get("block_size_bytes", "0")) if ready else 0
        uptime = init.fields.get("uptime", "?") if init else "?"
        self.say(
            f"guest {created.name} booted in {self.outcome.boot_s:.1f} s (QEMU started in "
            f"{started_s:.1f} s; the kernel ran init at uptime {uptime} s; memory block "
            f"{block // 2**20} MiB); {self._guest_nodes()}"
        )
        self.serial().wait(
            self._agent_settled, timeout_s=AGENT_TIMEOUT_S, what="the guest agent's first report"
        )
        self.outcome.agent_s = time.monotonic() - start
        self.say(
            f"the guest agent reported {self.outcome.agent_s:.1f} s after the domain started "
            f"and brought the blocks the devices plugged online: {self.guest_blocks()}"
        )
        converged = wait_for(
            self.converged, timeout_s=STEP_TIMEOUT_S, what="the service seeing the booted guest"
        )
        guest = ", ".join(f"{kib / KIB_PER_MIB:.0f}" for kib in self.settled_guest())
        self.say(
            f"service at the initial targets {self.targets()} MiB after {converged:.1f} s; "
            f"the guest's own MemTotal per node: {guest} MiB (boot memory the kernel keeps "
            "for itself is not in it)"
        )

    # --- 3. resizes ----------------------------------------------------------------------------

    def retarget_per_vnode(self) -> None:
        """vnode 0 grows by two blocks while vnode 1 gives one back: a plug and an unplug."""
        before = self.targets()
        after = [before[0] + 2 * BLOCK_MIB, before[1] - BLOCK_MIB]
        body = {"target_mib": sum(after), "policy": "explicit", "vnode_targets_mib": after}
        self._resize("PUT target per vnode", lambda: self.admin.set_target(self.domain_id, body))

    def grow_to_dynamic_max(self) -> None:
        """Every vnode to its whole span (policy proportional): both devices fully plugged."""
        body = {"target_mib": 2 * VNODE_MIB, "policy": "proportional"}
        self._resize(
            "PUT target to dynamic_max", lambda: self.admin.set_target(self.domain_id, body)
        )

    def squeeze(self) -> None:
        """Ask the host for two more blocks per vnode free: the service lowers the domain's
        targets, shared out by its (proportional) policy."""
        body = {"free_more_mib": 2 * BLOCK_MIB * self.outcome.vnodes}
        self._resize("squeeze the host", lambda: self.admin.squeeze(self.host_id, body))

    def _resize(self, label: str, request: Callable[[], object]) -> None:
        console = self.serial()
        base = self.settled_guest()
        before = self.targets()
        mark = len(self.agent.events())
        start = time.monotonic()
        request()
        after = self.targets()
        if after == before:
            raise StoryFailed(f"{label}: the service left the targets at {before} MiB")
        expected = [(level(a) - level(b)) * KIB_PER_MIB for a, b in zip(after, before, strict=True)]

        def guest_followed(c: Console) -> bool:
            now = c.meminfo()
            return (
                now is not None
                and all(
                    abs(n - b - e) < BLOCK_MIB * KIB_PER_MIB
                    for n, b, e in zip(now.node_kib, base, expected, strict=True)
                )
                and self.blocks_at(after) is None
            )

        console.wait(guest_followed, timeout_s=STEP_TIMEOUT_S, what=f"{label} in the guest")
        guest_s = time.monotonic() - start
        wait_for(self.converged, timeout_s=STEP_TIMEOUT_S, what=f"{label}: the service")
        converged_s = time.monotonic() - start
        final = self.settled_guest()
        delta = tuple(f - b for f, b in zip(final, base, strict=True))
        if not guest_followed(console):
            raise StoryFailed(
                f"{label}: the guest's nodes moved on to {delta} KiB; "
                f"{self.blocks_at(after) or 'blocks at the targets'}"
            )
        self.check_devices()
        self.last_steps = self.pool_steps_since(mark)
        resize = Resize(label, tuple(before), tuple(after), delta, guest_s, converged_s)
        self.outcome.resizes.append(resize)
        self.say(
            f"{label}: targets {before} -> {after} MiB; guest nodes "
            f"{', '.join(f'{d / KIB_PER_MIB:+.0f}' for d in delta)} MiB after {guest_s:.1f} s; "
            f"service converged after {converged_s:.1f} s; {self.guest_blocks()}; host agent "
            f"steps: {', '.join(self.last_steps) or 'none'}"
        )

    def off_grid_with_a_retry(self) -> None:
        """Targets that are not whole blocks (issue 27, item 3), with the first attempt of one of
        their steps failed (item 2): vnode 0 768 -> 700 MiB lies in its top block (the balloon
        step is acknowledged by the host agent, nothing moves), vnode 1 768 -> 601 unplugs one
        block (to 640) and the rest is a balloon step. The host agent is held (SIGSTOP) while
        the unplug is acknowledged failed in its name, as a libvirt error would; the service
        issues it again after the backoff and the released agent and the guest carry it out."""
        before = self.targets()
        after = [before[0] - 68, before[1] - 167]
        body = {"target_mib": sum(after), "policy": "explicit", "vnode_targets_mib": after}
        assert self.agent_client is not None
        agent = self.agent_client
        since = self.admin.latest_event_seq()
        failed: list[str] = []

        def request() -> None:
            self.agent.pause()
            try:
                self.admin.set_target(self.domain_id, body)
                for step in agent.agent_steps(self.host_id).items:
                    if step.domain_id == self.domain_id and step.op == "unplug":
                        detail = "e2e: an injected failure (as a libvirt error)"
                        agent.agent_ack(self.host_id, str(step.id), ok=False, detail=detail)
                        failed.append(f"{step.op} vnode {step.vnode} {step.mib} MiB")
            finally:
                self.agent.resume()

        self._resize("off-grid targets, a failed unplug retried", request)
        if not failed:
            raise StoryFailed("no unplug to fail: the service issued no unplug step")
        events = list(self.admin.iter_events(since=since, subject_id=self.domain_id))
        retried = [e.after for e in events if e.action == "step.retry_scheduled"]
        if not retried:
            raise StoryFailed(f"the failed {failed} was not retried: {[e.action for e in events]}")
        dom = self.admin.get_domain(self.domain_id)
        if dom.step_failure is not None:
            raise StoryFailed(f"the domain still shows a step failure: {dom.step_failure}")
        self.outcome.retries = len(retried)
        self.say(
            f"failed {failed} (attempt 1), retried: "
            + "; ".join(f"attempt {r['attempt'] + 1} due {r['retry_at']}" for r in retried if r)
            + "; converged, the domain's step_failure cleared"
        )

    def pool_steps_since(self, mark: int) -> list[str]:
        """The pool steps the host agent carried out after its log's line `mark` (as it
        describes them: `phase/op vnode N M MiB of domain ...`)."""
        return [
            str(e.get("step", "")).split(" of domain")[0]
            for e in self.agent.events()[mark:]
            if e.get("message") == "step" or e.get("event") == "step"
        ]

    # --- what the service, libvirt and the guest say -------------------------------------------

    def _agent_settled(self, c: Console) -> bool:
        """The guest agent has reported, and the kernel shows every node with the blocks its
        target plugs online and none offline."""
        self.agent.check_alive()
        if not any(e.get("event") == "reported" for e in c.agent):
            if any(line.kind in ("agent-exited", "agent-not-configured") for line in c.lines):
                raise StoryFailed(f"the guest agent did not start or stopped:\n{c.tail(30)}")
            return False
        return self.blocks_at(self.targets()) is None

    def blocks_at(self, targets: list[int]) -> str | None:
        """None when the kernel's blocks are the targets' (whole blocks, all online), else
        what they are."""
        blocks = self.serial().blocks()
        if blocks is None:
            return "no block line yet"
        for node, target in enumerate(targets):
            online, offline = blocks.online(node), blocks.offline(node)
            if offline or len(online) * BLOCK_MIB != level(target):
                return f"node {node}: online {online}, offline {offline}, target {target} MiB"
        return None

    def guest_blocks(self) -> str:
        blocks = self.serial().blocks()
        if blocks is None:
            return "no block line yet"
        return "; ".join(
            f"node{n} online {blocks.online(n)}"
            + (f" offline {off}" if (off := blocks.offline(n)) else "")
            for n in sorted(blocks.nodes)
        )

    def serial(self) -> Console:
        assert self.console is not None
        return self.console

    def _guest_nodes(self) -> str:
        now = self.serial().meminfo()
        if now is None:
            return "no meminfo yet"
        return "guest MemTotal " + ", ".join(
            f"node{i} {kib / KIB_PER_MIB:.1f} MiB" for i, kib in enumerate(now.node_kib)
        )

    def settled_guest(self, quiet_s: float = 1.0) -> tuple[int, ...]:
        """The guest's MemTotal per node once it has not changed for `quiet_s`."""
        console = self.serial()
        console.wait(
            lambda c: (m := c.meminfo()) is not None and time.monotonic() - m.seen_at >= quiet_s,
            timeout_s=STEP_TIMEOUT_S,
            what="a settled meminfo",
        )
        now = console.meminfo()
        assert now is not None
        return now.node_kib

    def targets(self) -> list[int]:
        return [v.target_mib for v in self.admin.get_domain(self.domain_id).vnodes]

    def converged(self) -> str | None:
        """None once the service holds every vnode at its target with nothing pending."""
        self.agent.check_alive()
        dom = self.admin.get_domain(self.domain_id)
        off = [(v.index, v.actual_mib, v.target_mib) for v in dom.vnodes]
        if any(actual != level(target) for _, actual, target in off):
            return f"(vnode, actual, target) {off}: whole blocks expected"
        if dom.uncooperative:
            return "the domain is flagged uncooperative"
        assert self.agent_client is not None
        steps = [s for s in self.agent_client.agent_steps(self.host_id).items]
        pending = [f"{s.op} vnode {s.vnode}" for s in steps if s.domain_id == self.domain_id]
        if pending:
            return f"steps pending: {pending}"
        acc = self.admin.host_accounting(self.host_id)
        mine = [d for d in acc.domains if d.domain_id == self.domain_id]
        held = sum(level(v.target_mib) for v in dom.vnodes)
        if not mine or mine[0].held_over_target_mib != held - dom.memory.target_mib:
            return f"accounting: {mine}, held {held} MiB"
        allocated = sum(p.allocated_mib for p in acc.pnodes)
        if allocated != held:
            return f"host allocated {allocated} MiB, the domain holds {held} (whole blocks)"
        return None

    def devices(self, flags: int = 0) -> list[tuple[int, int, int, int | None]]:
        """(node, boot KiB, requested KiB, current KiB) per virtio-mem device of the domain."""
        dom = self.conn.lookupByUUIDString(self.domain_id)
        root = ET.fromstring(dom.XMLDesc(flags))
        boot = {
            int(c.get("id", "0")): int(c.get("memory", "0")) for c in root.findall("cpu/numa/cell")
        }
        out = []
        for m in root.findall("devices/memory[@model='virtio-mem']"):
            node = int(m.findtext("target/node", "0"))
            current = m.findtext("target/current")
            out.append(
                (
                    node,
                    boot[node],
                    int(m.findtext("target/requested", "0")),
                    None if current is None else int(current),
                )
            )
        return sorted(out)

    def check_devices(self) -> float:
        """Each device holds what it was asked for, and the service's actual size of each vnode
        is the boot memory plus the device's `<current>`. libvirt's `<current>` follows QEMU's
        size-change events (at most one a second per device), so it may lag the guest's report
        that converged the service: waited for (the seconds it took)."""
        return wait_for(self._devices_hold, timeout_s=STEP_TIMEOUT_S, what="the devices' <current>")

    def _devices_hold(self) -> str | None:
        dom = self.admin.get_domain(self.domain_id)
        for node, boot, requested, current in self.devices():
            if current != requested:
                return f"vnode {node}: <current> {current} KiB, <requested> {requested}"
            actual = dom.vnodes[node].actual_mib
            if actual is None or actual * KIB_PER_MIB != boot + current:
                return (
                    f"vnode {node}: the service says {actual} MiB, libvirt {boot} + {current} KiB"
                )
        return None

    def check_saved_definition(self) -> None:
        """The persistent definition follows the live one (issue 27, item 1): a restart of the
        domain boots with the sizes the service set, not the ones it was defined with."""
        libvirt = binding()
        live = [(n, r) for n, _, r, _ in self.devices()]
        saved = [(n, r) for n, _, r, _ in self.devices(libvirt.VIR_DOMAIN_XML_INACTIVE)]
        if live != saved:
            raise StoryFailed(f"saved <requested> {saved} KiB, live {live}")
        self.say(f"the saved definition follows the live devices: {saved} (node, KiB)")
