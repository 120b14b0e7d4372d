"""Ordinary failures of both agents end in one line on stderr and the exit code of their kind
(those of `numa-balloon`: 1 refused, 2 usage, 3 unavailable, 4 failed), never a traceback:
a missing libvirt binding or daemon, no `xl`, an absent or wrong `--xl-info` file, a sysfs
root that is not one, the service down with --once, a refused token, a bad config file."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.local import LocalService
from numa_balloon_agent.cli import main as agent_main
from numa_balloon_client import Client
from numa_balloon_guest.cli import main as guest_main
from numa_balloon_testing.server import free_port
from tests.agents.trees import guest_tree, host_tree
from tests.libvirt_env import require_binding

ADMIN = "agent-errors-admin-token-0123456789"
XL_INFO = Path(__file__).parent / "xl_info"


@pytest.fixture(autouse=True)
def _own_logging() -> Iterator[None]:
    """`run` sets up the root logger as a program does; give the test harness its own back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    with LocalService(tmp_path_factory.mktemp("svc"), token=ADMIN) as svc:
        yield svc


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def agent(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = agent_main(list(argv))
    return code, one_line(capsys)


def guest(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = guest_main(list(argv))
    return code, one_line(capsys)


def test_no_libvirt_binding_says_how_to_get_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "libvirt", None)  # `import libvirt` raises ImportError
    code, line = agent(capsys, "discover", "--backend", "libvirt")
    assert code == 3 and line.startswith("numa-balloon-agent: unavailable: ")
    assert "make libvirt-binding" in line and "numa-balloon-agent[libvirt]" in line


def test_no_libvirt_daemon(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    require_binding()
    uri = f"qemu+unix:///system?socket={tmp_path / 'no-daemon-sock'}"
    code, line = agent(capsys, "discover", "--backend", "libvirt", "--uri", uri)
    assert code == 3 and f"cannot connect to {uri} (is its daemon running" in line
    assert "no-daemon-sock" in line


def test_no_xl(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a dom0 without the Xen tools
    code, line = agent(capsys, "discover", "--backend", "xen")
    assert code == 3 and "`xl`, which is not installed" in line and "--xl-info" in line


def test_xl_that_fails(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    xl = tmp_path / "xl"  # what xl says outside a Xen dom0
    xl.write_text(
        "#!/bin/sh\necho 'xencall: error: Could not obtain handle on privileged command "
        "interface: No such file or directory' >&2\nexit 1\n"
    )
    xl.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    code, line = agent(capsys, "discover", "--backend", "xen")
    assert code == 3 and "xl info -n exited 1" in line and "privileged command interface" in line


def test_xl_info_file_absent_or_not_xl_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    absent = tmp_path / "absent.txt"
    code, line = agent(capsys, "discover", "--backend", "xen", "--xl-info", str(absent))
    assert code == 2 and f"--xl-info {absent}: No such file or directory" in line
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("host : dom0\nrelease : 6.1\n")  # `xl info` without -n
    code, line = agent(capsys, "discover", "--backend", "xen", "--xl-info", str(wrong))
    assert code == 2 and "is not `xl info -n` output: no numa_info block" in line
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    code, line = agent(capsys, "discover", "--backend", "xen", "--xl-info", str(binary))
    assert code == 2 and f"--xl-info {binary}" in line
    good = sorted(XL_INFO.glob("*"))[0]  # and a real one still works
    assert agent_main(["discover", "--backend", "xen", "--xl-info", str(good)]) == 0


def test_sysfs_root_that_is_not_one(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, line = agent(capsys, "discover", "--sysfs-root", str(tmp_path / "absent"))
    assert code == 2 and "sys/devices/system/node is not a directory" in line
    code, line = guest(
        capsys, "--once", "--url", "http://127.0.0.1:9", "--token", "t", "--sysfs-root", "/nope"
    )
    assert code == 2 and "/nope/sys/devices/system/node is not a directory" in line


def test_service_down_with_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    root = host_tree(tmp_path / "root", [4096])
    code, line = agent(
        capsys, "run", "--once", "--url", down, "--token", ADMIN, "--sysfs-root", str(root),
        "--state-dir", str(tmp_path / "state"), "--log-format", "text",
    )  # fmt: skip
    assert code == 3 and line.startswith("error") and "no answer from the service" in line
    assert "exit_code=3" in line
    groot = guest_tree(tmp_path / "guest", [2])
    code, line = guest(
        capsys, "--once", "--url", down, "--token", "t", "--sysfs-root", str(groot),
        "--log-format", "json",
    )  # fmt: skip
    assert code == 3 and '"kind": "unavailable"' in line and '"level": "error"' in line


def test_refused_tokens(
    capsys: pytest.CaptureFixture[str], service: LocalService, tmp_path: Path
) -> None:
    groot = guest_tree(tmp_path / "guest", [2])
    code, line = guest(
        capsys, "--once", "--url", service.url, "--token", "not-a-guest-token",
        "--sysfs-root", str(groot), "--log-format", "text",
    )  # fmt: skip
    assert code == 1 and "401" in line and "kind=refused" in line
    root = host_tree(tmp_path / "root", [4096])
    argv = ["run", "--once", "--url", service.url, "--sysfs-root", str(root), "--name", "tok"]
    argv += ["--state-dir", str(tmp_path / "state"), "--log-format", "text"]
    code, line = agent(capsys, *argv)  # no state and no admin token: nothing to register with
    assert code == 2 and "the admin token (--token or NUMA_BALLOON_TOKEN) is needed once" in line
    assert agent_main([*argv, "--token", ADMIN]) == 0
    capsys.readouterr()
    state = (tmp_path / "state" / "agent.json").read_text()
    with Client(service.url, ADMIN) as admin:  # an operator rotates the agent token
        admin.rotate_agent_token(next(iter(admin.iter_hosts(name="tok"))).id)
    code, line = agent(capsys, *argv)
    assert code == 1 and "401" in line and "was refused (rotated?)" in line
    assert (tmp_path / "state" / "agent.json").read_text() == state


def test_config_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    code, line = agent(capsys, "discover", "--config", str(config))
    assert code == 2 and f"--config {config}: No such file or directory" in line
    config.write_text("backend = \n")
    code, line = agent(capsys, "discover", "--config", str(config))
    assert code == 2 and "is not TOML" in line
    config.write_text('bakend = "libvirt"\n')
    code, line = agent(capsys, "discover", "--config", str(config))
    assert code == 2 and "unknown key(s) bakend" in line
    config.write_text('backend = "libvrt"\n')  # not silently the xen backend
    code, line = agent(capsys, "discover", "--config", str(config))
    assert code == 2 and "backend = 'libvrt' is not one of sysfs, libvirt, xen" in line
    code, line = agent(capsys, "run", "--sysfs-root", "/")
    assert code == 2 and "run needs --url" in line


def test_the_installed_command_exits_with_the_code(tmp_path: Path) -> None:
    """The console script, as systemd starts it: the exit status is the code, stderr one line."""
    proc = subprocess.run(
        [sys.executable, "-m", "numa_balloon_agent", "discover", "--sysfs-root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("numa-balloon-agent: error: sysfs root")


def test_wrong_admin_token_and_a_state_dir_that_cannot_be(
    capsys: pytest.CaptureFixture[str], service: LocalService, tmp_path: Path
) -> None:
    root = host_tree(tmp_path / "root", [4096])
    argv = ["run", "--once", "--url", service.url, "--sysfs-root", str(root), "--name", "adm"]
    argv += ["--log-format", "text"]
    state = ["--state-dir", str(tmp_path / "state")]
    code, line = agent(capsys, *argv, *state, "--token", "not-the-admin-token")
    assert code == 1 and "401" in line and "the admin token was refused" in line
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    code, line = agent(capsys, *argv, "--state-dir", str(a_file / "state"), "--token", ADMIN)
    assert code == 2 and f"--state-dir {a_file / 'state'}: cannot keep the agent's state" in line
    with Client(service.url, ADMIN) as admin:  # checked before registering: no host, no token
        assert not list(admin.iter_hosts(name="adm"))


def test_a_tree_the_kernel_would_not_publish(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = host_tree(tmp_path / "root", [4096, 4096])
    (root / "sys/devices/system/node/node1/distance").write_text("10 21 31\n")  # 3 for 2 nodes
    code, line = agent(capsys, "discover", "--sysfs-root", str(root))
    assert code == 2 and "node1/distance has 3 entries for 2 nodes" in line
