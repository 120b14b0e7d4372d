"""End to end: a real uvicorn; the host agent on libvirt's test driver (source) and on a sysfs
tree (destination); the guest agent on the guest's memory-block tree. A migration between the
two hosts completes with every step done by the agents: the guest unplugs and replugs blocks,
the libvirt agent balloons, moves the domain (cold, to a second test-driver connection) with its
new <numatune>, and releases the source."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.local import LocalService
from demo.real_agents import DESTINATION_NODE, balloon_only_domain
from numa_balloon_agent.agent import Agent, Settings
from numa_balloon_agent.backends.sysfs import SysfsBackend
from numa_balloon_agent.backends.xen import XenBackend
from numa_balloon_client import Client, Conflict
from numa_balloon_guest.agent import GuestAgent
from numa_balloon_guest.blocks import MemoryBlocks
from tests.agents.test_xen import SAVED as XL_INFO
from tests.agents.test_xen import fake_xen_tools, recorded
from tests.agents.trees import block_states, guest_tree, host_tree
from tests.libvirt_env import require_binding

ADMIN = "e2e-admin-token-0123456789abcdef"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    with LocalService(tmp_path_factory.mktemp("svc"), token=ADMIN) as svc:
        yield svc


def _agent(backend: object, url: str, name: str, state: Path) -> Agent:
    settings = Settings(
        url=url, admin_token=ADMIN, name=name, state_dir=state, interval_s=0, reserved_mib=0
    )
    return Agent(backend, settings, sleep=lambda _: None)  # type: ignore[arg-type]


def _sysfs_agent(url: str, name: str, where: Path) -> Agent:
    """An agent of a two-node sysfs host whose tree is at `where`-root, its state at `where`."""
    root = where.with_name(f"{where.name}-root")
    return _agent(SysfsBackend(host_tree(root, [4096, 4096])), url, name, where)


def test_migration_done_by_the_agents(service: LocalService, tmp_path: Path) -> None:
    libvirt = require_binding()
    from numa_balloon_agent.backends.libvirt import LibvirtBackend

    # The destination hypervisor: a test driver of its own, from a custom node definition (in
    # one process every test:///default connection shares one driver).
    elsewhere = tmp_path / "destination-node.xml"
    elsewhere.write_text(DESTINATION_NODE)
    source = LibvirtBackend("test:///default", migrate_uri=f"test://{elsewhere}", migration="cold")
    kvm = _agent(source, service.url, "kvm-test-driver", tmp_path / "a")
    linux = _sysfs_agent(service.url, "linux-sysfs", tmp_path / "b")
    assert kvm.run(once=True) == 0 and linux.run(once=True) == 0
    admin = Client(service.url, ADMIN)
    assert kvm.host_id is not None and linux.host_id is not None
    hosts = {h.name: h for h in admin.iter_hosts()}
    assert [p.memory_mib for p in hosts["kvm-test-driver"].pnodes] == [2048, 4096]

    body = {
        "name": "vm-e2e",
        "host_id": kvm.host_id,
        "policy": "faithful",
        "memory": {"dynamic_min_mib": 512, "dynamic_max_mib": 2048, "target_mib": 2048},
        "vnodes": [
            {"size_mib": 1024, "vcpus": [0, 1], "distances": [10, 21]},
            {"size_mib": 1024, "vcpus": [2, 3], "distances": [21, 10]},
        ],
    }
    dom = admin.create_domain(body)
    xml = balloon_only_domain(admin.export_domain(dom.id, "libvirt-domain"), [1024, 1024])
    source.conn.defineXML(xml).create()
    guest_root = guest_tree(tmp_path / "guest", [8, 8])
    guest = GuestAgent(Client(service.url, dom.guest_token), MemoryBlocks(guest_root))
    assert guest.cycle() == {0: 1024, 1: 1024}

    mig = admin.start_migration(dom.id, linux.host_id, "replug")
    state = mig.state
    for _ in range(40):
        if state == "completed":
            break
        for agent in (kvm, linux):
            agent.cycle()
        guest.cycle()
        try:
            state = admin.advance_migration(mig.id).state
        except Conflict:
            continue
    final = admin.get_migration(mig.id)
    assert final.state == "completed", final
    steps = [s for s in final.model_dump()["steps"] if s["phase"] != "claim"]
    assert steps and all(s["state"] == "acked" for s in steps), [
        (s["op"], s["state"], s["detail"]) for s in steps
    ]
    details = {s["op"]: s["detail"] for s in steps}
    assert "defineXML" in details["migrate"]
    assert "no longer runs" in details["release"]
    # The libvirt agent moved the domain away; the guest's blocks follow the new pools.
    with pytest.raises(libvirt.libvirtError):
        source.conn.lookupByUUIDString(dom.id)
    moved = admin.get_domain(dom.id)
    assert moved.host_id == linux.host_id
    online = sum(1 for s in block_states(guest_root).values() if s.startswith("online"))
    assert online * 128 == moved.memory.target_mib
    acc = admin.host_accounting(kvm.host_id)
    assert all(p.allocated_mib == 0 and p.claimed_mib == 0 for p in acc.pnodes)
    for closing in (kvm, linux, guest.client, admin):
        closing.close()


def test_run_once_registers_idempotently_and_keeps_a_private_token(
    service: LocalService, tmp_path: Path
) -> None:
    import subprocess
    import sys

    root = host_tree(tmp_path / "root", [8192, 8192, 8192, 8192])
    (tmp_path / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    argv = [
        sys.executable, "-m", "numa_balloon_agent", "run", "--once", "--backend", "sysfs",
        "--sysfs-root", str(root), "--url", service.url, "--token", ADMIN, "--name", "once-1",
        "--machine-id-file", str(tmp_path / "machine-id"), "--log-format", "text",
    ]  # fmt: skip
    for state_dir in ("s1", "s2"):  # a lost state file registers again: the same host
        proc = subprocess.run(
            [*argv, "--state-dir", str(tmp_path / state_dir)], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        assert "reported" in proc.stderr
    # s2 got the token s1 holds (the replay of the registration shows it again); an operator
    # rotates it: s1's token is refused, the agent registers once more, and since the replay
    # shows the rotated token again it gets a new one.
    with Client(service.url, ADMIN) as admin:
        once = next(h.id for h in admin.iter_hosts() if h.name == "once-1")
        admin.rotate_agent_token(once)
    proc = subprocess.run(
        [*argv[:-1], "json", "--state-dir", str(tmp_path / "s1")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines()]  # JSON lines, one per event
    assert [e["event"] for e in lines][:2] == [
        "agent token refused; registering again",
        "registered",
    ]
    reported = next(e for e in lines if e["event"] == "reported")
    assert reported["free_mib"] == [4096] * 4 and reported["level"] == "info"
    state = tmp_path / "s1" / "agent.json"
    assert state.stat().st_mode & 0o777 == 0o600
    with Client(service.url, ADMIN) as admin:
        assert [h.name for h in admin.iter_hosts() if h.name == "once-1"] == ["once-1"]
        host_id = next(h.id for h in admin.iter_hosts() if h.name == "once-1")
        acc = admin.host_accounting(host_id)
    assert [p.observed_free_mib for p in acc.pnodes] == [4096] * 4  # MemFree, half of each


def test_recovery_restarted_by_the_xen_agent(service: LocalService, tmp_path: Path) -> None:
    """A failed host's protected domain restarts on a Xen host: its start step names the pnodes
    the service charged there, the Xen agent (xl and xenstore as recording scripts) creates the
    domain's xl.cfg (written from the xl export) with those pnodes and acknowledges: it runs."""
    runner, _store, log = fake_xen_tools(tmp_path)
    config_dir = tmp_path / "etc-xen"
    config_dir.mkdir()
    backend = XenBackend(xl_info=XL_INFO / "two_socket.txt", runner=runner, config_dir=config_dir)
    settings = Settings(
        url=service.url,
        admin_token=ADMIN,
        name="xen-restarts",
        state_dir=tmp_path / "x",
        interval_s=0,
        reserved_mib=0,
        external_id="e2e-xen-restarts",
    )
    xen = Agent(backend, settings, sleep=lambda _: None)
    linux = _sysfs_agent(service.url, "fails", tmp_path / "f")
    assert xen.run(once=True) == 0 and linux.run(once=True) == 0
    admin = Client(service.url, ADMIN)
    dom = admin.create_domain(
        {
            "name": "vm-restarts-on-xen",
            "host_id": linux.host_id,
            "labels": {"ha": "true"},
            "memory": {"dynamic_min_mib": 3072, "dynamic_max_mib": 3072, "target_mib": 3072},
            "vnodes": [
                {"size_mib": 2048, "vcpus": [0, 1], "distances": [10, 21]},
                {"size_mib": 1024, "vcpus": [2, 3], "distances": [21, 10]},
            ],
        }
    )
    (config_dir / "vm.cfg").write_text(admin.export_domain(dom.id, "xl"))
    admin.patch_cluster({"ha": {"host_failures": 1, "label_selector": "ha=true"}})
    assert linux.host_id is not None
    recovery = admin.fail_host(linux.host_id, "e2e")
    assert [(r.domain_id, r.host_id) for r in recovery.restarts] == [(dom.id, xen.host_id)]
    assert xen.cycle()["acked"] == 1
    restarted = admin.get_domain(dom.id)
    assert restarted.state == "running"
    homes = [v.home_pnode for v in restarted.vnodes]
    create = [c for c in recorded(log) if c[:2] == ["xl", "create"]]
    assert len(create) == 1 and create[0][2] == str(config_dir / "vm.cfg")
    vnuma = create[0][3]
    assert (
        vnuma.startswith("vnuma=[")
        and [int(p) for p in re.findall(r'"pnode=(\d+)"', vnuma)] == homes
    )
    for closing in (xen, linux, admin):
        closing.close()
