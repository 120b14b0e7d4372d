"""The host agent's cycle against a real uvicorn: sysfs discovery on this machine and on
kernel-shaped trees, dry runs, and surviving the control plane being down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.local import LocalService
from numa_balloon_agent.agent import Agent, Settings
from numa_balloon_agent.backends.sysfs import SysfsBackend
from numa_balloon_agent.steps import Step
from numa_balloon_client import Client, InvalidInput
from tests.agents.trees import NODE, guest_tree, host_tree
from tests.client.sysfs_trees import four_node, make_tree, memory_only, two_socket

ADMIN = "host-agent-admin-token-0123456789ab"


def eight_node(root: Path) -> Path:
    """Two sockets of four nodes each with asymmetric distances (a row is not its column:
    the kernel prints what the firmware's SLIT says)."""
    d = [
        [10 if i == j else (12 if i // 4 == j // 4 else 32 + (i > j)) for j in range(8)]
        for i in range(8)
    ]
    return make_tree(root, {n: (32_768 * 1024, list(range(n * 4, n * 4 + 4))) for n in range(8)}, d)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    with LocalService(tmp_path_factory.mktemp("svc"), token=ADMIN) as svc:
        yield svc


def _agent(root: Path, url: str, name: str, state: Path, **kw: object) -> Agent:
    settings = Settings(url=url, admin_token=ADMIN, name=name, state_dir=state, **kw)  # type: ignore[arg-type]
    return Agent(SysfsBackend(root), settings, sleep=lambda _: None)


def test_this_machines_sys_is_a_host_the_service_accepts(
    service: LocalService, tmp_path: Path
) -> None:
    backend = SysfsBackend("/")
    body = backend.discover(name="this-machine", reserved_mib=0)
    n = len(body["pnodes"])
    assert n == len(list(Path("/sys/devices/system/node").glob("node[0-9]*")))
    assert all(body["distances"][i][i] == 10 for i in range(n))
    assert len(backend.free_mib()) == n
    agent = Agent(
        backend,
        Settings(url=service.url, admin_token=ADMIN, name="this-machine", state_dir=tmp_path),
    )
    assert agent.run(once=True) == 0
    agent.close()


@pytest.mark.parametrize("shape", [two_socket, four_node, eight_node, memory_only])
def test_kernel_shaped_trees(shape: object, service: LocalService, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shape(root / NODE)  # type: ignore[operator]
    name = f"tree-{shape.__name__}"  # type: ignore[attr-defined]
    agent = _agent(root, service.url, name, tmp_path / "state")
    body = agent.backend.discover(name=name, reserved_mib=0)
    if shape is memory_only:  # a node without CPUs: the service refuses the host, says where
        assert body["pnodes"][1]["cpus"] == 0
        with pytest.raises(InvalidInput) as refused:
            agent.run(once=True)
        assert any(i.loc[-1] == "cpus" for i in refused.value.errors)
        return
    agent.run(once=True)
    with Client(service.url, ADMIN) as admin:
        host = admin.get_host(str(agent.host_id))
        assert [p.memory_mib for p in host.pnodes] == [p["memory_mib"] for p in body["pnodes"]]
        assert host.distances == body["distances"]
        acc = admin.host_accounting(str(agent.host_id))
    assert [p.observed_free_mib for p in acc.pnodes] == agent.backend.free_mib()
    agent.close()


def test_sysfs_fails_a_restart_saying_why(tmp_path: Path) -> None:
    """A failover's `start` step sent to a sysfs agent: failed, with the reason and the fix."""
    step = Step("s", "d-1", "start", "restart", None, None, 1024, 1024, None)
    out = SysfsBackend(host_tree(tmp_path, [1024])).apply(step, dry_run=False)
    assert out.ack and not out.ok
    assert "runs no hypervisor" in out.detail and "cannot start domain d-1" in out.detail
    assert "--backend libvirt or xen" in out.detail


def test_dry_run_reports_but_acknowledges_nothing(service: LocalService, tmp_path: Path) -> None:
    root = tmp_path / "root"
    two_socket(root / NODE)
    agent = _agent(root, service.url, "dry", tmp_path / "state", dry_run=True)
    agent.run(once=True)
    with Client(service.url, ADMIN) as admin:
        body = {
            "name": "dry-vm",
            "host_id": agent.host_id,
            "memory": {"dynamic_min_mib": 1024, "dynamic_max_mib": 4096, "target_mib": 4096},
            "vnodes": [{"size_mib": 4096, "vcpus": [0], "distances": [10]}],
        }
        dom = admin.create_domain(body)
        other = admin.create_host(
            {
                "name": "dry-dest",
                "pnodes": [{"memory_mib": 65536, "reserved_mib": 0, "cpus": 4}],
                "distances": [[10]],
            }
        )
        mig = admin.start_migration(dom.id, other.id, "rebalance")
        admin.advance_migration(mig.id)  # preparing: nothing to shrink
        assert admin.advance_migration(mig.id).state == "migrating"
    agent.cycle()
    with Client(service.url, str(agent.client.token if agent.client else "")) as me:
        pending = me.agent_steps(str(agent.host_id)).items
    assert [s.op for s in pending] == ["migrate"]  # the sysfs backend would have failed it
    agent.close()


def test_survives_the_control_plane_going_away(tmp_path: Path) -> None:
    root = tmp_path / "root"
    two_socket(root / NODE)
    svc = LocalService(tmp_path / "svc", token=ADMIN)
    svc.start()
    delays: list[float] = []
    agent = _agent(root, svc.url, "flaky", tmp_path / "state", interval_s=1.0, max_backoff_s=8.0)
    agent.sleep = delays.append
    try:
        agent.run(once=True)
        svc.stop()
        agent.run(cycles=5)  # five failed cycles: no exception, backing off up to the bound
        assert len(delays) == 4  # between the five cycles
        assert all(0.5 <= d <= 8.0 for d in delays) and max(delays) > 1.0
        svc.start()  # same port and database: the agent resumes with its saved host
        host_id = agent.host_id
        agent.run(cycles=2)
        assert agent.host_id == host_id and delays[-1] == 1.0  # back to the interval
    finally:
        agent.close()
        svc.stop()


def test_guest_cli_once(service: LocalService, tmp_path: Path) -> None:
    import subprocess
    import sys

    with Client(service.url, ADMIN) as admin:
        host = admin.create_host(
            {
                "name": "g-host",
                "pnodes": [{"memory_mib": 65536, "reserved_mib": 0, "cpus": 4}],
                "distances": [[10]],
            }
        )
        dom = admin.create_domain(
            {
                "name": "g-vm",
                "host_id": host.id,
                "memory": {"dynamic_min_mib": 512, "dynamic_max_mib": 1024, "target_mib": 1024},
                "vnodes": [{"size_mib": 1024, "vcpus": [0], "distances": [10]}],
            }
        )
        root = guest_tree(tmp_path / "guest", [8])
        proc = subprocess.run(
            [sys.executable, "-m", "numa_balloon_guest", "--once", "--url", service.url,
             "--token", dom.guest_token, "--sysfs-root", str(root), "--log-format", "text"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert admin.get_domain(dom.id).vnodes[0].actual_mib == 1024
