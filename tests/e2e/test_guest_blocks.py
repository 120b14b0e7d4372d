"""The guest agent against a real uvicorn on the memory blocks of the e2e guest's kernel (the
tree and the kernel's answers recorded in `guest_kernel`): what `make e2e` showed the agent got
wrong on a real guest, each case as the real kernel did it."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.local import LocalService
from numa_balloon_client import Client
from numa_balloon_guest.agent import GuestAgent
from numa_balloon_guest.blocks import MemoryBlocks
from tests.e2e.guest_kernel import (
    RecordedKernel,
    device_plugs,
    device_unplugs_offline,
    real_guest_tree,
    states,
)

ADMIN = "guest-blocks-admin-token-0123456789"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    with LocalService(tmp_path_factory.mktemp("svc"), token=ADMIN) as svc:
        yield svc


class Guest:
    """A domain like `make e2e`'s (two 1024 MiB vnodes, 128 MiB blocks, 256 MiB boot memory
    each) at 512/384 MiB, its guest agent on the recorded kernel, and its host's agent token."""

    def __init__(self, service: LocalService, root: Path, name: str) -> None:
        self.admin = Client(service.url, ADMIN)
        host = self.admin.create_host(
            {
                "name": f"h-{name}",
                "pnodes": [{"memory_mib": 65536, "cpus": 4}],
                "distances": [[10]],
            }
        )
        self.host_id = host.id
        self.host_agent = Client(service.url, str(host.agent_token))
        dom = self.admin.create_domain(
            {
                "name": f"g-{name}",
                "host_id": host.id,
                "block_mib": 128,
                "policy": "explicit",
                "vnode_targets_mib": [512, 384],
                # dynamic_min 256: a floor of one block per vnode, so the service asks what the
                # recorded kernel (boot memory 256 MiB a node) cannot give (its refusals tested).
                "memory": {"dynamic_min_mib": 256, "dynamic_max_mib": 2048, "target_mib": 896},
                "vnodes": [
                    {"size_mib": 1024, "vcpus": [0], "distances": [10, 20]},
                    {"size_mib": 1024, "vcpus": [1], "distances": [20, 10]},
                ],
            }
        )
        self.domain_id = dom.id
        self.root = real_guest_tree(root, plugged={0: 2, 1: 1})
        self.agent = GuestAgent(Client(service.url, str(dom.guest_token)), RecordedKernel(root))
        assert self.agent.cycle() == {0: 512, 1: 384}

    def target(self, vnodes: list[int]) -> None:
        body = {"target_mib": sum(vnodes), "policy": "explicit", "vnode_targets_mib": vnodes}
        self.admin.set_target(self.domain_id, body)

    def pending(self) -> list[tuple[str, int]]:
        return [(op.op, op.vnode) for op in self.agent.client.guest_balloon().pending]

    def actual(self) -> list[int | None]:
        return [v.actual_mib for v in self.admin.get_domain(self.domain_id).vnodes]

    def close(self) -> None:
        for c in (self.admin, self.host_agent, self.agent.client):
            c.close()


@pytest.fixture
def guest(service: LocalService, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Guest]:
    g = Guest(service, tmp_path / "guest", request.node.name.removeprefix("test_")[:40])
    yield g
    g.close()


def test_the_service_pfns_name_the_nodes_own_blocks(guest: Guest) -> None:
    """The service lays vnode 1 out from PFN 262144 (after vnode 0's 1024 MiB); the guest's
    node 1 is blocks 2-3 (boot) and 38.. (its virtio-mem region at 4.75 GiB). Its top block,
    span index 2, is memory38, not block 10 (which no node has)."""
    guest.target([512, 256])
    guest.agent.cycle()
    now = states(guest.root)
    assert now[38] == "offline"
    assert [now[b] for b in (0, 1, 2, 3, 32, 33)] == ["online"] * 6


def test_an_unplug_is_done_when_the_device_took_the_blocks_back(guest: Guest) -> None:
    """Offlining is the guest's half: the block stays the device's (and the pool's) until the
    device unplugs it, so the step stays pending meanwhile; the agent does not offline more."""
    guest.target([512, 256])
    guest.agent.cycle()
    assert guest.pending() == [("unplug", 1)]
    assert guest.actual() == [512, 384]
    guest.agent.cycle()  # again: nothing more to offline, the device has not acted yet
    assert [b for b, s in states(guest.root).items() if s == "offline"] == [38]
    assert device_unplugs_offline(guest.root, 1) == [38]
    assert guest.agent.cycle() == {0: 512, 1: 256}
    assert guest.pending() == []
    assert guest.actual() == [512, 256]


def test_a_plug_the_hypervisor_report_completed_is_brought_online(guest: Guest) -> None:
    """The host agent's report (boot memory + the device's <current>) can complete a plug
    before the guest agent saw the step; the device's new blocks wait offline
    (memhp_default_state=offline) and the pool's plugged_blocks bring them online."""
    guest.target([768, 384])
    added = device_plugs(guest.root, 0, 2)
    report: dict[str, Any] = {
        "pnodes": [{"index": 0, "free_mib": 60000}],
        "domains": [
            {
                "domain_id": guest.domain_id,
                "vnodes": [{"index": 0, "actual_mib": 768}, {"index": 1, "actual_mib": 384}],
            }
        ],
    }
    guest.host_agent.agent_report(guest.host_id, report)
    assert guest.pending() == []
    assert guest.agent.cycle() == {0: 768, 1: 384}
    assert [states(guest.root)[b] for b in added] == ["online", "online"]
    assert guest.agent.blocks.zones(added[0]) == ["Movable"]


def test_a_request_below_what_the_guest_can_give_is_partial(
    guest: Guest, caplog: pytest.LogCaptureFixture
) -> None:
    """vnode 0 to 128 MiB names span indexes 1-3: boot block memory1 (the kernel answers EBUSY)
    and the device's two blocks (offlined, then taken back). The pool stops at 256 MiB, the step
    stays pending, and the refusal is logged with the kernel's errno per block."""
    guest.target([128, 384])
    guest.agent.cycle()
    assert device_unplugs_offline(guest.root, 0) == [32, 33]
    assert guest.agent.cycle() == {0: 256, 1: 384}
    assert guest.pending() == [("unplug", 0)]
    assert guest.actual() == [256, 384]
    assert states(guest.root)[1] == "online"
    refused = [r for r in caplog.records if getattr(r, "refused", None)]
    assert refused and all(r.refused == {1: "EBUSY"} for r in refused)  # type: ignore[attr-defined]
    assert refused[0].changed == [32, 33]  # type: ignore[attr-defined]
    assert states(guest.root)[2] == states(guest.root)[3] == "online"  # node 1 untouched


def test_a_block_gone_before_the_write_is_absent_not_refused(tmp_path: Path) -> None:
    """The device may unplug a block between the agent reading its state and writing it: the
    kernel then answers ENODEV, which is not a refusal."""
    root = real_guest_tree(tmp_path, plugged={0: 2, 1: 0})

    class Racing(RecordedKernel):
        def write_state(self, block: int, value: str) -> None:
            if block == 33:
                (root / "sys/devices/system/node/node0/memory33").unlink()
                for f in (self.memory / "memory33").iterdir():
                    f.unlink()
                (self.memory / "memory33").rmdir()
            super().write_state(block, value)

    progress = Racing(root).set_state([32, 33], online=False)
    assert progress.changed == [32] and progress.missing == [33] and not progress.refused
    with pytest.raises(OSError) as gone:
        RecordedKernel(root).write_state(33, "offline")
    assert gone.value.errno == errno.ENODEV


def test_an_offline_the_kernel_cannot_finish_is_abandoned(tmp_path: Path) -> None:
    """The kernel retries migrating a block's pages until the writer gets a fatal signal (the
    e2e guest's memory38 stayed going-offline for minutes once, the agent blocked in its write).
    Here the block's `state` is a FIFO nobody reads, so the write never returns either: it is
    abandoned after the timeout as ETIMEDOUT, and the other blocks are still done."""
    root = real_guest_tree(tmp_path, plugged={0: 2, 1: 0})
    state = root / "sys/devices/system/memory/memory32/state"
    state.unlink()
    os.mkfifo(state)

    class Stuck(MemoryBlocks):
        def state(self, block: int) -> str | None:
            return "online" if block == 32 else super().state(block)

    blocks = Stuck(root, write_timeout_s=0.3)
    progress = blocks.set_state([32, 33], online=False)
    assert progress.refused == {32: "ETIMEDOUT"}
    assert progress.changed == [33]
