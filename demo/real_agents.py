"""The demo with the real agents (`make demo AGENTS=real`): no simulation of the host side.

- host `kvm-test-driver`: `numa-balloon-agent`'s libvirt backend on libvirt's test driver
  (test:///default), which registers the host from the capabilities it reads;
- host `linux-sysfs`: the sysfs backend on a generated 2-node tree;
- guest `vm-demo`: defined in the test driver from the service's `libvirt-domain` export (as a
  balloon-only domain: the test driver cannot resize virtio-mem devices), with the guest agent
  on a generated memory-block tree.
The story: lower the guest's target (the libvirt agent balloons, the guest agent unplugs blocks),
then migrate it to the sysfs host with unplug/replug; every step is done by an agent (the
libvirt agent moves the domain cold, to a second test driver, with its new <numatune>).
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from demo.sysfs_trees import block_states, guest_blocks, host_nodes
from numa_balloon_agent.agent import Agent, Settings
from numa_balloon_agent.backends.base import Backend
from numa_balloon_agent.backends.sysfs import SysfsBackend
from numa_balloon_client import Client, Conflict
from numa_balloon_guest.agent import GuestAgent
from numa_balloon_guest.blocks import MemoryBlocks

DESTINATION_NODE = """<node>
  <cpu><mhz>2400</mhz><model>x86_64</model><nodes>2</nodes><sockets>2</sockets>
    <cores>4</cores><threads>1</threads></cpu>
  <memory>8388608</memory>
</node>
"""


def balloon_only_domain(export: str, sizes_mib: list[int]) -> str:
    """The libvirt-domain export without its virtio-mem devices: each cell holds its whole
    span and the balloon is the only knob (what libvirt's test driver can drive)."""
    root = ET.fromstring(export)
    devices = root.find("devices")
    if devices is not None:
        for m in devices.findall("memory"):
            devices.remove(m)
    max_memory = root.find("maxMemory")
    if max_memory is not None:
        root.remove(max_memory)
    for cell, size in zip(root.findall("cpu/numa/cell"), sizes_mib, strict=True):
        cell.set("memory", str(size * 1024))
        cell.set("unit", "KiB")
    return ET.tostring(root, encoding="unicode")


def _agent(backend: Backend, url: str, token: str, name: str, state: Path) -> Agent:
    # The demo's machines are made up: nothing of them is the host's own, so nothing is reserved.
    settings = Settings(
        url=url, admin_token=token, name=name, state_dir=state, interval_s=0, reserved_mib=0
    )
    return Agent(backend, settings, sleep=lambda _: None)


def _drive(agents: list[Agent], guest: GuestAgent, until: Any, rounds: int = 40) -> int:
    for n in range(1, rounds + 1):
        for agent in agents:
            agent.cycle()
        guest.cycle()
        if until():
            return n
    raise RuntimeError(f"not done after {rounds} rounds")


def play_real(url: str, token: str, workdir: Path) -> dict[str, Any]:
    from numa_balloon_agent.backends.libvirt import LibvirtBackend

    (workdir / "destination-node.xml").write_text(DESTINATION_NODE)
    kvm_backend = LibvirtBackend(
        "test:///default",
        migrate_uri=f"test://{workdir / 'destination-node.xml'}",
        migration="cold",
    )
    kvm = _agent(kvm_backend, url, token, "kvm-test-driver", workdir / "kvm")
    linux_root = host_nodes(workdir / "linux-root", [8192, 8192])
    linux = _agent(SysfsBackend(linux_root), url, token, "linux-sysfs", workdir / "linux")
    agents = [kvm, linux]
    with Client(url, token) as admin:
        for agent in agents:
            agent.run(once=True)
            print(f"  {agent.settings.name}: registered by its agent ({agent.backend.name})")
        dom = admin.create_domain(
            {
                "name": "vm-demo",
                "host_id": kvm.host_id,
                "policy": "faithful",
                "memory": {"dynamic_min_mib": 512, "dynamic_max_mib": 2048, "target_mib": 2048},
                "vnodes": [
                    {"size_mib": 1024, "vcpus": [0, 1], "distances": [10, 21]},
                    {"size_mib": 1024, "vcpus": [2, 3], "distances": [21, 10]},
                ],
            }
        )
        export = admin.export_domain(dom.id, "libvirt-domain")
        kvm_backend.conn.defineXML(balloon_only_domain(export, [1024, 1024])).create()
        print("  vm-demo: defined and started in libvirt's test driver from the export")
        guest_root = guest_blocks(workdir / "guest-root", [8, 8])
        with Client(url, dom.guest_token) as guest_http:
            guest = GuestAgent(guest_http, MemoryBlocks(guest_root))
            guest.cycle()
            admin.set_target(dom.id, {"target_mib": 1536})
            rounds = _drive(
                agents,
                guest,
                lambda: not kvm.client or not kvm.client.agent_steps(str(kvm.host_id)).items,
            )
            balloon_kib = kvm_backend.conn.lookupByUUIDString(dom.id).info()[2]
            print(
                f"  target 1536 MiB: done in {rounds} round(s), balloon {balloon_kib // 1024} MiB"
            )
            mig = admin.start_migration(dom.id, str(linux.host_id), "replug")
            state = {"value": mig.state}

            def completed() -> bool:
                with contextlib.suppress(Conflict):
                    state["value"] = admin.advance_migration(mig.id).state
                return state["value"] == "completed"

            rounds = _drive(agents, guest, completed)
            final = admin.get_migration(mig.id)
            print(f"  migration to linux-sysfs: {final.state} in {rounds} round(s)")
            steps = [s for s in final.model_dump()["steps"] if s["phase"] != "claim"]
            for s in steps:
                print(f"    {s['phase']:8} {s['op']:8} {s['state']:6} {s['detail']}")
        online = sum(1 for s in block_states(guest_root).values() if s.startswith("online"))
        moved = admin.get_domain(dom.id)
    for agent in agents:
        agent.close()
    return {
        "migration": final.state,
        "steps_done": all(s["state"] == "acked" for s in steps),
        "guest_online_mib": online * 128,
        "target_mib": moved.memory.target_mib,
        "host": "linux-sysfs" if moved.host_id == linux.host_id else moved.host_id,
    }
