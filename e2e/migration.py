"""The seed's scenario on real processes: the guest moves to another host with unplug/replug.

The second host is a second private libvirt daemon (its own host UUID and socket) with its own
host agent. Both daemons run on this one-node machine, and QEMU can bind a guest cell's memory
only to a node that exists, so the second host cannot have a second node with memory the guest
could use. The operator registers it as a two-node host whose node 1 has CPUs and its memory
reserved (a CPU-only node, as some machines have) and gives its agent the host's id and agent
token; the agent's reports cover node 0, the one libvirt shows.

`POST /v1/migrations` (strategy `replug`, policy `proportional`) plans it; the run advances it
phase by phase while the agents do the steps: the source agent and the guest agent unplug the
pools down to their boot memory (`prepare`), the source agent migrates the domain live to the
second daemon (`migrateToURI3`, the new `<numatune>`), the second host's agent and the guest
agent plug the pools up to the destination's levels (`settle`), the source agent confirms the
domain left (`release`). Afterwards the guest kernel's nodes hold what the plan said.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from e2e.services import HostAgent
from e2e.story import BLOCK_MIB, KIB_PER_MIB, Story, StoryFailed, wait_for
from numa_balloon_client import Client, Conflict

PHASE_TIMEOUT_S = 240.0  # a live migration of a TCG guest on a busy machine
BOOT_MIB = 256
SHAPE = {
    "pnodes": [
        {"memory_mib": 0, "cpus": 1},  # memory_mib: this machine's node 0 (set at registration)
        {"memory_mib": 1024, "reserved_mib": 1023, "cpus": 1},
    ],
    "distances": [[10, 21], [21, 10]],
}


@dataclass
class Destination:
    """The second host: its libvirt connection, its agent and its id in the service."""

    conn: Any
    agent: HostAgent
    host_id: str
    agent_token: str


def register_destination(admin: Client, name: str, memory_mib: int) -> tuple[str, str]:
    """The operator registers the second host with its shape: (host id, agent token)."""
    body: dict[str, Any] = {"name": name, "distances": SHAPE["distances"]}
    body["pnodes"] = [dict(p) for p in SHAPE["pnodes"]]  # type: ignore[attr-defined]
    body["pnodes"][0]["memory_mib"] = memory_mib
    created = admin.create_host(body)
    return created.id, str(created.agent_token)


def migrate(story: Story, start_destination: Callable[[], Destination]) -> dict[str, Any]:
    dest = start_destination()
    admin = story.admin
    wait_for(lambda: _reported(admin, dest), timeout_s=60, what="the second host's agent")
    before = story.targets()
    base = story.settled_guest()
    mig = admin.start_migration(story.domain_id, dest.host_id, "replug", policy="proportional")
    plan = mig.model_dump(mode="json")["plan"]
    carried = _levels(plan, "migrate", before)
    after = [int(sum(row)) for row in plan["backing_after"]]
    story.say(
        f"migration {mig.id} planned: replug, {before} -> carried {carried} -> {after} MiB on "
        f"{len(plan['backing_after'][0])}-pnode host {dest.host_id[:8]} (mapping "
        f"{plan['mapping_after']}, distortion {plan['distortion_before']} -> "
        f"{plan['distortion_after']})"
    )
    if any(c < BOOT_MIB for c in carried):
        raise StoryFailed(
            f"the plan carries {carried} MiB: below a vnode's boot memory ({BOOT_MIB} MiB), "
            "which no unplug can give"
        )
    start = time.monotonic()
    phases = _advance(story, mig.id)
    took = time.monotonic() - start
    _check_steps(admin.get_migration(mig.id).model_dump(mode="json"))
    source = story.host_id
    _check_moved(story, dest)
    acc = admin.host_accounting(source)
    if any(p.allocated_mib or p.claimed_mib for p in acc.pnodes):
        raise StoryFailed(f"the first host still charges memory: {acc.pnodes}")
    console = story.serial()
    console.wait(
        lambda c: story.blocks_at(after) is None,
        timeout_s=PHASE_TIMEOUT_S,
        what="the guest's blocks at the plan's levels",
    )
    now = story.settled_guest()
    delta = [(n - b) / KIB_PER_MIB for n, b in zip(now, base, strict=True)]
    want = [a - b for a, b in zip(after, before, strict=True)]
    if any(abs(d - w) >= BLOCK_MIB for d, w in zip(delta, want, strict=True)):
        raise StoryFailed(f"the guest's nodes changed by {delta} MiB; the plan said {want}")
    story.say(
        f"migration done in {took:.1f} s ({' '.join(f'{p} {s:.1f} s' for p, s in phases)}); "
        f"the guest's nodes changed by {', '.join(f'{d:+.0f}' for d in delta)} MiB, as planned; "
        f"it runs on the second daemon; {story.guest_blocks()}"
    )
    return {"before": before, "carried": carried, "after": after, "seconds": took}


def _reported(admin: Client, dest: Destination) -> str | None:
    dest.agent.check_alive()
    acc = admin.host_accounting(dest.host_id)
    if acc.pnodes[0].observed_free_mib is None:
        return "no report from the second host's agent yet"
    return None


def _levels(plan: dict[str, Any], phase: str, before: list[int]) -> list[int]:
    """The pools' levels once the steps up to `phase` are done."""
    levels = list(before)
    for step in plan["steps"]:
        if step["phase"] == phase:
            break
        if step["op"] in ("plug", "unplug", "balloon") and step.get("vnode") is not None:
            levels[step["vnode"]] = step["target_mib"]
    return levels


def _advance(story: Story, migration_id: str) -> list[tuple[str, float]]:
    """Advance phase by phase, each once the agents acknowledged the steps it waits for."""
    out: list[tuple[str, float]] = []
    state = story.admin.get_migration(migration_id).state
    while state != "completed":
        began = time.monotonic()

        def advanced() -> str | None:
            nonlocal state
            for agent in story.agents():
                agent.check_alive()
            try:
                moved = story.admin.advance_migration(migration_id)
            except Conflict as exc:
                return str(exc)
            if moved.state in ("failed", "aborted"):
                raise StoryFailed(f"migration {moved.state}: {moved.model_dump()}")
            state = moved.state
            return None

        wait_for(advanced, timeout_s=PHASE_TIMEOUT_S, what=f"migration past {state}", poll_s=0.5)
        out.append((state, time.monotonic() - began))
        story.say(f"migration: {state} after {out[-1][1]:.1f} s")
    return out


def _check_steps(migration: dict[str, Any]) -> None:
    """Every step done and acknowledged by an agent (pool steps by the reports)."""
    steps = [s for s in migration["steps"] if s["phase"] != "claim"]
    bad = [
        (s["op"], s.get("vnode"), s["state"], s.get("detail"))
        for s in steps
        if s["state"] != "acked"
    ]
    if bad:
        raise StoryFailed(f"steps not acknowledged: {bad}")
    details = {s["op"]: s.get("detail") or "" for s in steps}
    if "migrateToURI3" not in details.get("migrate", ""):
        raise StoryFailed(f"the migrate step: {details.get('migrate')}")
    if "no longer runs" not in details.get("release", ""):
        raise StoryFailed(f"the release step: {details.get('release')}")


def _check_moved(story: Story, dest: Destination) -> None:
    """The domain runs on the second daemon, not the first; the service agrees."""
    dom = story.admin.get_domain(story.domain_id)
    if dom.host_id != dest.host_id:
        raise StoryFailed(f"the service places the domain on {dom.host_id}")
    there = dest.conn.lookupByUUIDString(story.domain_id)
    if not there.isActive():
        raise StoryFailed("the domain is not running on the second daemon")
    if any(d.UUIDString() == story.domain_id for d in story.conn.listAllDomains()):
        raise StoryFailed("the domain is still defined on the first daemon")
    story.moved_to(dest.conn, dest.agent, dest.host_id, dest.agent_token)
    wait_for(story.converged, timeout_s=PHASE_TIMEOUT_S, what="the service after the migration")
    story.check_devices()
