"""The host agent finds the host registered for its machine and adopts it instead of colliding
with it: `numa-balloon hosts register --from-sysfs`, then the agent's `run` on the same machine
(both set the machine's external_id), a lost state directory with another body, and the cases
where the host is not this machine's or the token may not adopt."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.local import LocalService
from numa_balloon_agent.cli import main as agent_main
from numa_balloon_client import Client, Unauthorized
from numa_balloon_client.machine import APP_ID, app_specific_id, external_id
from numa_balloon_client.sysfs import host_from_sysfs
from tests.agents.trees import NODE, host_tree

ADMIN = "adoption-admin-token-0123456789abcd"
# What systemd computes (`systemd-id128 machine-id --app-specific=APP_ID` on a machine whose
# /etc/machine-id holds MACHINE): the derivation is systemd's, not ours.
MACHINE = "3d1219c7c4c5404aaa1f6d2a48adfda4"
APP_SPECIFIC = "cd88c0579c374962b518ca3f459e6245"


@pytest.fixture(autouse=True)
def _own_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    with LocalService(tmp_path_factory.mktemp("svc"), token=ADMIN) as svc:
        yield svc


def machine(root: Path, nodes_mib: list[int], machine_id: str | None) -> Path:
    """A machine's tree: its nodes under sys/, its id in etc/machine-id (when it has one)."""
    host_tree(root, nodes_mib)
    if machine_id is not None:
        (root / "etc").mkdir(parents=True, exist_ok=True)
        (root / "etc/machine-id").write_text(machine_id + "\n")
    return root


def register_with_cli(url: str, root: Path, name: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-m", "numa_balloon_cli", "--url", url, "--token", ADMIN,
         "--output", "json", "hosts", "register", "--from-sysfs", str(root / NODE),
         "--name", name],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    created: dict[str, object] = json.loads(proc.stdout)
    return created


def run_once(url: str, root: Path, name: str, state: Path, *extra: str) -> int:
    return agent_main(
        ["run", "--once", "--url", url, "--token", ADMIN, "--sysfs-root", str(root),
         "--name", name, "--state-dir", str(state), "--log-format", "json", *extra]
    )  # fmt: skip


def events(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]


def test_the_machine_id_is_systemds_app_specific_id(tmp_path: Path) -> None:
    assert app_specific_id(MACHINE) == APP_SPECIFIC
    (tmp_path / "machine-id").write_text(MACHINE.upper() + "\n")
    assert external_id(tmp_path / "machine-id") == f"machine:{APP_SPECIFIC}"
    (tmp_path / "machine-id").write_text("uninitialized\n")  # first boot: no id yet
    assert external_id(tmp_path / "machine-id") is None
    assert external_id(tmp_path / "absent") is None
    here = Path("/etc/machine-id")
    tool = shutil.which("systemd-id128")
    if tool and here.exists():  # this machine, by systemd itself
        ours = subprocess.run(
            [tool, "machine-id", f"--app-specific={APP_ID}"], capture_output=True, text=True
        ).stdout.strip()
        assert external_id(here) == f"machine:{ours}"


def test_register_from_sysfs_carries_the_machines_id(tmp_path: Path) -> None:
    root = machine(tmp_path / "m", [4096, 4096], MACHINE)
    assert host_from_sysfs(root / NODE, name="m")["external_id"] == f"machine:{APP_SPECIFIC}"
    bare = host_tree(tmp_path / "bare", [4096])  # a node tree alone names no machine
    assert "external_id" not in host_from_sysfs(bare / NODE, name="b")


def test_agent_adopts_the_host_the_cli_registered(
    service: LocalService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = machine(tmp_path / "vm", [8192, 8192], "11111111111111111111111111111111")
    created = register_with_cli(service.url, root, "vm")
    assert created["external_id"] == external_id(root / "etc/machine-id")

    assert run_once(service.url, root, "vm", tmp_path / "state") == 0
    log = events(capsys)
    adopted = next(e for e in log if e["event"] == "adopted this machine's host")
    assert adopted["host_id"] == created["id"] and adopted["host_name"] == "vm"
    assert any(e["event"] == "reported" for e in log)
    with Client(service.url, ADMIN) as admin:
        assert [h.id for h in admin.iter_hosts(name="vm")] == [created["id"]]
        acc = admin.host_accounting(str(created["id"]))
    assert [p.observed_free_mib for p in acc.pnodes] == [4096, 4096]  # the agent reports
    # Adopting re-issued the agent token: the one the CLI printed works no more.
    with Client(service.url, str(created["agent_token"])) as old, pytest.raises(Unauthorized):
        old.agent_steps(str(created["id"]))
    # A second run uses the saved state: no registration, no rotation.
    assert run_once(service.url, root, "vm", tmp_path / "state") == 0
    assert not [e for e in events(capsys) if "adopted" in str(e["event"])]


def test_a_lost_state_directory_and_a_changed_body_adopt_the_same_host(
    service: LocalService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = machine(tmp_path / "m", [8192], "22222222222222222222222222222222")
    assert run_once(service.url, root, "kept", tmp_path / "s1") == 0
    first = next(e for e in events(capsys) if e["event"] == "registered")
    # The state is lost and the operator now holds back 1 GiB per node: another body.
    assert run_once(service.url, root, "kept", tmp_path / "s2", "--reserved-mib", "1024") == 0
    again = next(e for e in events(capsys) if "adopted" in str(e["event"]))
    assert again["host_id"] == first["host_id"]


def test_a_host_of_another_machine_with_this_name_is_not_taken(
    service: LocalService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = machine(tmp_path / "other", [8192], "33333333333333333333333333333333")
    register_with_cli(service.url, other, "twin")
    here = machine(tmp_path / "here", [8192], "44444444444444444444444444444444")
    assert run_once(service.url, here, "twin", tmp_path / "state") == 1
    (line,) = [e for e in events(capsys) if e["level"] == "error"]
    assert "a host named 'twin' already exists" in str(line["event"])
    assert "no host has this machine's external_id machine:" in str(line["event"])
    assert "another --name" in str(line["event"]) and line["exit_code"] == 1
    anonymous = machine(tmp_path / "anonymous", [8192], None)  # no machine id to go by
    assert run_once(service.url, anonymous, "twin", tmp_path / "state2") == 1
    (line,) = [e for e in events(capsys) if e["level"] == "error"]
    assert "knows no machine id" in str(line["event"]) and "--external-id" in str(line["event"])
    with Client(service.url, ADMIN) as admin:
        assert len(list(admin.iter_hosts(name="twin"))) == 1


def test_same_machine_other_topology_and_an_enroll_key(
    service: LocalService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = machine(tmp_path / "m", [8192, 8192], "55555555555555555555555555555555")
    register_with_cli(service.url, root, "shape")
    grown = machine(tmp_path / "grown", [8192] * 4, "55555555555555555555555555555555")
    assert run_once(service.url, grown, "shape", tmp_path / "s1") == 1
    (line,) = [e for e in events(capsys) if e["level"] == "error"]
    assert "has this machine's external_id but 2 pnode(s), and this machine has 4" in str(
        line["event"]
    )
    with Client(service.url, ADMIN) as admin:
        key = admin.create_api_key("enroller", "enroll")
    secret = key["secret"] if isinstance(key, dict) else key.secret
    argv = ["run", "--once", "--url", service.url, "--token", str(secret), "--sysfs-root"]
    argv += [str(root), "--name", "shape", "--state-dir", str(tmp_path / "s2")]
    assert agent_main([*argv, "--log-format", "json"]) == 1
    (line,) = [e for e in events(capsys) if e["level"] == "error"]
    assert "needs the admin role" in str(line["event"])
