"""The systemd units in deploy/: systemd accepts them as written (`systemd-analyze verify`, no
warning), each backend's variant keeps the least privilege it works with, and
`systemd-analyze security` rates them far below what they shipped with (the agent 9.0 UNSAFE,
the guest 9.6 UNSAFE: root, no sandbox, no UMask)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.agents.systemd_units import exec_start, lay_out, security, verify

SHIPPED_BEFORE = {"numa-balloon-agent.service": 9.0, "numa-balloon-guest.service": 9.6}
AGENT = "numa-balloon-agent.service"
GUEST = "numa-balloon-guest.service"
# unit, drop-ins (the backend), the exposure it must stay under
VARIANTS = [
    (GUEST, (), 2.0),
    (AGENT, (), 1.5),  # sysfs
    (AGENT, ("libvirt.conf",), 1.5),
    (AGENT, ("xen.conf",), 4.5),  # root, for xl and xenstore
]


def fake_install(root: Path, unit: str) -> None:
    """The program ExecStart names, where the install steps put it (test_packaging installs
    the real wheels there)."""
    program = root / exec_start(unit).relative_to("/")
    program.parent.mkdir(parents=True, exist_ok=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize(("unit", "drop_ins", "bound"), VARIANTS)
def test_units_verify_and_rate_low(
    tmp_path: Path, unit: str, drop_ins: tuple[str, ...], bound: float
) -> None:
    lay_out(tmp_path, unit, drop_ins)
    fake_install(tmp_path, unit)
    checked = verify(tmp_path, unit)
    assert checked.returncode == 0 and not checked.stderr.strip(), checked.stderr
    exposure, checks = security(tmp_path, unit)
    assert exposure <= bound < SHIPPED_BEFORE[unit], exposure
    for name in ("UMask=", "ProtectSystem=", "NoNewPrivileges=", "PrivateTmp=", "PrivateMounts="):
        assert checks[name]["set"], (name, checks[name])


def test_each_backend_gets_what_it_needs_and_no_more(tmp_path: Path) -> None:
    """sysfs and libvirt: not root, no capability; libvirt adds the libvirt group; xen: root
    (xl and xenstore), with the filesystem still read-only but for Xen's own state."""
    runs_as = {}
    for name, drop_ins in (("sysfs", ()), ("libvirt", ("libvirt.conf",)), ("xen", ("xen.conf",))):
        root = tmp_path / name
        lay_out(root, AGENT, drop_ins)
        fake_install(root, AGENT)
        _, checks = security(root, AGENT)
        runs_as[name] = checks["User=/DynamicUser="]["set"]
        if name != "xen":
            assert checks["CapabilityBoundingSet=~CAP_SYS_ADMIN"]["set"]
            assert checks["PrivateDevices="]["set"] and checks["ProtectHome="]["set"]
        assert checks["ProtectSystem="]["set"] and checks["ProtectKernelModules="]["set"]
    assert runs_as == {"sysfs": True, "libvirt": True, "xen": False}
    libvirt = (Path(__file__).parents[2] / "deploy" / f"{AGENT}.d" / "libvirt.conf").read_text()
    assert "SupplementaryGroups=libvirt" in libvirt


def test_the_guest_is_root_without_capabilities_writing_only_memory_blocks(
    tmp_path: Path,
) -> None:
    lay_out(tmp_path, GUEST)
    fake_install(tmp_path, GUEST)
    _, checks = security(tmp_path, GUEST)
    assert not checks["User=/DynamicUser="]["set"]  # uid 0: the block state files are root's
    for cap in ("CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_NET_ADMIN", "CAP_SYS_RAWIO"):
        assert checks[f"CapabilityBoundingSet=~{cap}"]["set"], cap
    assert checks["ProtectKernelTunables="]["set"]
    unit = (Path(__file__).parents[2] / "deploy" / GUEST).read_text()
    assert "ReadWritePaths=/sys/devices/system/memory\n" in unit
