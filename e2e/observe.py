"""`python -m e2e --observe`: after the story, targets the service does not handle right yet on a
real guest (issue 27 items 2 to 4, and an unplug the guest cannot honour, issue 24), each left to
run for a while and then described as the guest kernel, libvirt and the service see it. Nothing
here asserts: it records what happens, for the fixes to turn into phases of the story.

- a target that is not whole blocks, growing (27.3): the device plugs whole blocks;
- the same vnode shrunk to another non-block target (27.3, and 27.4: the unplug's size);
- a vnode asked below its boot memory (24.1: a request below what the guest can give).
"""

from __future__ import annotations

import json
import time
from typing import Any

from e2e.story import BLOCK_MIB, KIB_PER_MIB, Story

SETTLE_S = 30.0  # beyond the service's uncooperative_after_s (20 s by default)


def observe(story: Story) -> list[dict[str, Any]]:
    t = story.targets()
    cases = [
        ("grow to a target that is not whole blocks", [t[0] + BLOCK_MIB // 2, t[1]]),
        ("shrink to another target off the block grid", [t[0] - BLOCK_MIB // 4 - 1, t[1]]),
        ("a vnode below its boot memory", [t[0], BLOCK_MIB // 2]),
    ]
    out = []
    for label, targets in cases:
        out.append(_case(story, label, targets))
        story.say(f"observed: {json.dumps(out[-1])}")
    return out


def _case(story: Story, label: str, targets: list[int]) -> dict[str, Any]:
    admin = story.admin
    seq = _last_seq(story)
    base = story.settled_guest()
    body = {"target_mib": sum(targets), "policy": "explicit", "vnode_targets_mib": targets}
    admin.set_target(story.domain_id, body)
    time.sleep(SETTLE_S)
    now = story.settled_guest()
    dom = admin.get_domain(story.domain_id)
    assert story.agent_client is not None
    steps = story.agent_client.agent_steps(story.host_id).items
    events = [
        {"action": e.action, "after": e.after}
        for e in admin.list_events(since=seq, limit=100).items
        if e.action.startswith(("step.", "domain."))
    ]
    agent = [
        {"step": e.get("step"), "detail": e.get("detail"), "ok": e.get("ok")}
        for e in story.agent.events()
        if e.get("event") == "step"
    ]
    return {
        "case": label,
        "targets_mib": targets,
        "guest_memtotal_delta_mib": [
            round((n - b) / KIB_PER_MIB, 1) for n, b in zip(now, base, strict=True)
        ],
        "libvirt_node_boot_requested_current_kib": story.devices(),
        "service_actual_mib": [v.actual_mib for v in dom.vnodes],
        "service_target_mib": [v.target_mib for v in dom.vnodes],
        "uncooperative": dom.uncooperative,
        "pending_steps": [f"{s.op} vnode {s.vnode} {s.mib} MiB -> {s.target_mib}" for s in steps],
        "events": events,
        "agent_steps_so_far": agent[-4:],
    }


def _last_seq(story: Story) -> int:
    return max((e.seq for e in story.admin.iter_events()), default=0)
