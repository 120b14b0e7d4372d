"""Below a vnode's floor, and an unplug sized from what the pool holds.

A vnode of this guest has 256 MiB of boot memory (its share of `dynamic_min_mib`, in whole
blocks: its NUMA cell's `memory`). No hypervisor call can take it back (only the virtio-mem
device's memory moves) and the guest kernel refuses its boot blocks (EBUSY on memory1, seen on
this guest before issue 27): asked to 128 MiB, the unplug stayed pending forever and the domain
was flagged uncooperative. The service now refuses such a target (422, located at the vnode),
so the guest is never asked. Then a target at the floor: vnode 0, at 700 MiB (held 768: whole
blocks) goes to 256 with an unplug of 512 MiB, what the pool holds above the floor (sized from
the previous target it said 444, issue 27 item 4), while vnode 1 (601, held 640) grows to 768
with a plug of one block.
"""

from __future__ import annotations

from dataclasses import dataclass

from e2e.story import BLOCK_MIB, Story, StoryFailed, level
from numa_balloon_client.errors import InvalidInput

BOOT_MIB = 256  # the vnode's share of dynamic_min_mib: its NUMA cell's boot memory


@dataclass(frozen=True)
class Floor:
    refused: list[str]
    steps: list[str]


def below_the_floor(story: Story) -> Floor:
    """A target below vnode 0's boot memory is refused, located; then targets at the floor
    converge, with steps sized from what the pools hold."""
    before = story.targets()
    low = [BLOCK_MIB, before[1]]
    body = {"target_mib": sum(low), "policy": "explicit", "vnode_targets_mib": low}
    try:
        story.admin.set_target(story.domain_id, body)
    except InvalidInput as exc:
        refused = [f"{issue}" for issue in exc.errors]
        locs = [list(issue.loc) for issue in exc.errors]
        if locs != [["body", "vnode_targets_mib", 0]]:
            raise StoryFailed(f"the refusal of {low} MiB is located at {locs}") from None
    else:
        raise StoryFailed(f"the service accepted vnode 0 at {low[0]} MiB, below its boot memory")
    if story.targets() != before:
        raise StoryFailed("a refused target changed the domain's targets")
    story.say(f"vnode targets {low} MiB refused (422): {'; '.join(refused)}")
    after = [BOOT_MIB, 2 * 384]
    reach = {"target_mib": sum(after), "policy": "explicit", "vnode_targets_mib": after}
    story._resize("to the floor", lambda: story.admin.set_target(story.domain_id, reach))
    held = [level(t) for t in before]
    want = [
        f"balloon/unplug vnode 0 {held[0] - BOOT_MIB} MiB",
        f"balloon/plug vnode 1 {after[1] - held[1]} MiB",
    ]
    missing = [w for w in want if w not in story.last_steps]
    if missing:
        raise StoryFailed(f"steps {story.last_steps}; expected {want} (sized from what is held)")
    return Floor(refused, story.last_steps)
