"""The deploy/ units as systemd reads them: laid out under a scratch root (the unit in
etc/systemd/system, its drop-ins beside it, systemd's own targets, the program it starts), then
`systemd-analyze verify` and `systemd-analyze security --offline` on that root, with no running
systemd needed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.libvirt_env import IN_CI

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
_OVERALL = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)")


def missing(what: str) -> None:
    """Skip locally; under CI=true fail, so a machine that lost the tool cannot go green."""
    message = f"{what} not available (make system-deps installs it)"
    if IN_CI:
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None or not SYSTEM_UNITS.is_dir():
        missing("systemd-analyze (the systemd package)")
    assert path is not None
    return path


def lay_out(root: Path, unit: str, drop_ins: tuple[str, ...] = ()) -> Path:
    """`root` with the unit, the chosen drop-ins and systemd's targets (which `verify` loads
    for the default dependencies); returns the unit's path under it."""
    system = root / "etc/systemd/system"
    system.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEPLOY / unit, system / unit)
    for name in drop_ins:
        target = system / f"{unit}.d" / name
        target.parent.mkdir(exist_ok=True)
        shutil.copy(DEPLOY / f"{unit}.d" / name, target)
    targets = root / "usr/lib/systemd/system"
    targets.mkdir(parents=True, exist_ok=True)
    for found in SYSTEM_UNITS.glob("*.target"):
        if found.is_file() and not (targets / found.name).exists():
            shutil.copy(found, targets / found.name)
    return system / unit


def exec_start(unit: str) -> Path:
    """The program the unit starts (the first word of ExecStart=)."""
    for line in (DEPLOY / unit).read_text().splitlines():
        if line.startswith("ExecStart="):
            return Path(line.removeprefix("ExecStart=").split()[0])
    raise AssertionError(f"{unit} has no ExecStart=")


def verify(root: Path, unit: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [analyze(), "verify", f"--root={root}", unit],
        capture_output=True,
        text=True,
        timeout=120,
    )


def security(root: Path, unit: str) -> tuple[float, dict[str, dict[str, Any]]]:
    """(overall exposure, each check by name) as `systemd-analyze security` rates the unit."""
    argv = [analyze(), "security", "--offline=true", f"--root={root}", "--no-pager", unit]
    text = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    found = _OVERALL.search(text.stdout + text.stderr)
    assert found is not None, text.stdout + text.stderr
    raw = subprocess.run([*argv, "--json=short"], capture_output=True, text=True, timeout=120)
    checks = {c["name"]: c for c in json.loads(raw.stdout)}
    return float(found.group(1)), checks
