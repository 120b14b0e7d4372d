"""The guest agent's memory-block work on kernel-shaped trees."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from numa_balloon_guest.blocks import MemoryBlocks
from tests.agents.trees import MEMORY, block_states, guest_tree

PAGES_PER_128_MIB = 128 * 256


def test_measures_online_blocks_per_node(tmp_path: Path) -> None:
    blocks = MemoryBlocks(guest_tree(tmp_path, [4, 8]))
    assert blocks.block_bytes() == 128 << 20
    assert [blocks.node_mib(0), blocks.node_mib(1)] == [512, 1024]


def test_unplug_then_plug_a_pfn_range(tmp_path: Path) -> None:
    root = guest_tree(tmp_path, [4, 4])
    blocks = MemoryBlocks(root)
    # vnode 1 spans PFNs [4 blocks, 8 blocks); unplug its top two blocks
    top = [[6 * PAGES_PER_128_MIB, 8 * PAGES_PER_128_MIB]]
    span = blocks.span_blocks(1, 4 * PAGES_PER_128_MIB, top)
    assert span.blocks == [6, 7] and span.absent == []
    progress = blocks.set_state(span.blocks, online=False)
    assert progress.changed == [6, 7] and not progress.refused
    assert block_states(root)[6] == "offline" and block_states(root)[5] == "online"
    assert blocks.node_mib(1) == 256
    again = blocks.set_state([6, 7], online=False)
    assert again.already == [6, 7] and again.changed == []
    plugged = blocks.set_state([6, 7], online=True)
    assert plugged.changed == [6, 7]
    assert block_states(root)[7] == "online_movable"
    assert blocks.node_mib(1) == 512


def test_a_refused_block_is_partial_progress(tmp_path: Path) -> None:
    """The kernel refusing a block (EBUSY on a real one; here an immutable state file, whose
    write fails with EPERM even for root) leaves the others done and names it, without raising."""
    root = guest_tree(tmp_path, [4])
    state = root / MEMORY / "memory2" / "state"
    if subprocess.run(["chattr", "+i", str(state)], check=False).returncode != 0:
        pytest.skip("this filesystem has no immutable attribute")
    try:
        blocks = MemoryBlocks(root)
        progress = blocks.set_state([1, 2, 3], online=False)
        assert progress.changed == [1, 3]
        assert progress.refused == {2: "EPERM"}
        assert "kernel refused memory2 (EPERM)" in progress.summary("unplug")
        assert blocks.node_mib(0) == 256  # blocks 0 and 2 still online
    finally:
        subprocess.run(["chattr", "-i", str(state)], check=True)


def test_without_memory_blocks_meminfo_is_the_measure(tmp_path: Path) -> None:
    from tests.agents.trees import host_tree

    blocks = MemoryBlocks(host_tree(tmp_path, [2048, 1024]))
    assert not blocks.available
    assert [blocks.node_mib(0), blocks.node_mib(1)] == [2048, 1024]


def test_the_agent_reports_what_the_guest_kernel_shows_next_to_what_it_holds(
    tmp_path: Path,
) -> None:
    """Issue 27 item 7: the guest's own per-node MemTotal (here 910 MiB of node 0's 1024 held)
    goes with the report as `visible_mib`."""
    from types import SimpleNamespace
    from typing import Any

    from numa_balloon_guest.agent import GuestAgent
    from tests.agents.trees import NODE

    root = guest_tree(tmp_path, [8, 8])
    (root / NODE / "node0" / "meminfo").write_text("Node 0 MemTotal:  931840 kB\n")
    sent: list[tuple[Any, Any]] = []

    class FakeClient:
        def guest_topology(self) -> Any:
            vnodes = [SimpleNamespace(index=i, memranges=[]) for i in (0, 1)]
            return SimpleNamespace(vnodes=vnodes)

        def guest_balloon(self) -> Any:
            return SimpleNamespace(pending=[], vnodes=[])

        def guest_report(self, actual: Any, visible: Any = None) -> None:
            sent.append((actual, visible))

    agent = GuestAgent(FakeClient(), MemoryBlocks(root))  # type: ignore[arg-type]
    agent.cycle()
    assert sent == [({0: 1024, 1: 1024}, {0: 910, 1: 1024})]
