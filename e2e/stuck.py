"""An unplug the guest cannot honour: vnode 0 asked down to one block, below its boot memory.

The unplug names vnode 0's span indexes 1 and up: its second boot block (memory1, which holds
the kernel's own pages: the kernel answers EBUSY) and every block of its virtio-mem device. The
guest agent offlines the device's blocks, the device takes them back, and the kernel refuses
the boot block. Both reports (the host agent's view of the device, the guest agent's blocks)
then say 256 MiB for a 128 MiB target: the step stays pending, the pool stays above its target,
and after `uncooperative_after_s` without progress the service flags the domain uncooperative
(its squeezes then hold it at its actual size). Partial progress and a stuck flag, never done.
Setting a target the guest can reach cancels the step and clears the flag.

Whole blocks on purpose: a target off the block grid sticks for another reason today (issue 27,
item 3); this phase will take one (say 100 MiB) once that is fixed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from e2e.console import Console
from e2e.story import BLOCK_MIB, KIB_PER_MIB, STEP_TIMEOUT_S, Story, StoryFailed, wait_for

BOOT_MIB = 256  # the vnode's share of dynamic_min_mib: its NUMA cell's boot memory
FLAG_TIMEOUT_S = 120.0  # the service's uncooperative_after_s (20 s) and the agents' cycles


@dataclass(frozen=True)
class Stuck:
    target_mib: int
    actual_mib: int
    refused: dict[str, str]  # block -> the kernel's errno, as the guest agent logged it
    flagged_s: float


def unplug_below_boot(story: Story) -> Stuck:
    """Ask vnode 0 below its boot memory; check the guest gave its device's blocks, the kernel
    refused a boot block, and the service shows the partial progress and the stuck flag; then
    set a reachable target again."""
    console = story.serial()
    before = story.targets()
    base = story.settled_guest()
    target = BLOCK_MIB
    body = {"target_mib": target + before[1], "policy": "explicit"}
    body["vnode_targets_mib"] = [target, before[1]]
    start = time.monotonic()
    story.admin.set_target(story.domain_id, body)
    seen = len(console.agent)

    def refused() -> dict[str, str]:
        """The kernel's refusals of this unplug, as the guest agent logged them."""
        out: dict[str, str] = {}
        for e in console.agent[seen:]:
            if e.get("op") == "unplug" and e.get("vnode") == 0 and e.get("refused"):
                out.update({str(k): str(v) for k, v in e["refused"].items()})  # type: ignore[attr-defined]
        return out

    def gave_what_it_could(c: Console) -> bool:
        """Refusals logged, and the kernel shows node 0 with its boot blocks only, online."""
        blocks = c.blocks()
        return (
            bool(refused())
            and blocks is not None
            and len(blocks.online(0)) * BLOCK_MIB == BOOT_MIB
            and not blocks.offline(0)
        )

    console.wait(
        gave_what_it_could, timeout_s=STEP_TIMEOUT_S, what="vnode 0 down to its boot memory"
    )
    wait_for(
        lambda: _flagged(story, target), timeout_s=FLAG_TIMEOUT_S, what="the stuck unplug flagged"
    )
    flagged_s = time.monotonic() - start
    actual = story.admin.get_domain(story.domain_id).vnodes[0].actual_mib
    drop = (base[0] - story.settled_guest()[0]) / KIB_PER_MIB
    story.say(
        f"unplug below boot memory: vnode 0 asked {before[0]} -> {target} MiB; the guest gave "
        f"{drop:.0f} MiB (its device's blocks) and the kernel refused {refused()} (block: "
        f"errno); the service holds vnode 0 at {actual} MiB with its unplug pending, flagged "
        f"uncooperative {flagged_s:.1f} s after the request"
    )
    if abs(drop - (before[0] - BOOT_MIB)) >= BLOCK_MIB:
        raise StoryFailed(f"the guest's node 0 dropped {drop:.0f} MiB, not {before[0] - BOOT_MIB}")
    _recover(story, [BOOT_MIB, before[1]])
    return Stuck(target, actual or 0, refused(), flagged_s)


def _flagged(story: Story, target: int) -> str | None:
    """None once the service shows partial progress and the stuck flag, never done."""
    story.agent.check_alive()
    dom = story.admin.get_domain(story.domain_id)
    vnode = dom.vnodes[0]
    if vnode.actual_mib != BOOT_MIB:
        return f"vnode 0 actual {vnode.actual_mib} MiB, not its boot memory {BOOT_MIB}"
    assert story.agent_client is not None
    pending = [
        s
        for s in story.agent_client.agent_steps(story.host_id).items
        if s.domain_id == story.domain_id and s.vnode == 0 and s.op == "unplug"
    ]
    if not pending or pending[0].target_mib != target:
        raise StoryFailed(f"the unplug to {target} MiB is no longer pending: {pending}")
    if not dom.uncooperative:
        return "not flagged uncooperative yet"
    return None


def _recover(story: Story, targets: list[int]) -> None:
    """A target the guest can reach: the stuck step is cancelled, the flag cleared."""
    body = {"target_mib": sum(targets), "policy": "explicit", "vnode_targets_mib": targets}
    story.admin.set_target(story.domain_id, body)
    took = wait_for(story.converged, timeout_s=STEP_TIMEOUT_S, what="back to a reachable target")
    story.say(f"targets {targets} MiB: converged and cooperative again after {took:.1f} s")
