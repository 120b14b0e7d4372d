"""What the libvirt tests need: ``virsh`` (libvirt-clients) and the Python binding
(libvirt-python, built against the system's libvirt by ``make install``). Missing locally: the test
skips; under CI=true it fails, so a CI image that lost them cannot turn the checks into skips."""

from __future__ import annotations

import os
import shutil
import subprocess
from types import ModuleType

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _missing(what: str) -> None:
    message = f"{what} not available (make system-deps install, then make install)"
    if IN_CI:
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def require_virsh() -> str:
    path = shutil.which("virsh")
    if path is None:
        _missing("virsh (libvirt-clients)")
    assert path is not None
    return path


def require_binding() -> ModuleType:
    try:
        import libvirt
    except ImportError:
        _missing("the libvirt Python binding (libvirt-python)")
    return libvirt


def virsh(*commands: str, uri: str = "test:///default") -> str:
    """Run commands in ONE virsh session (test:///default is fresh for every connection)."""
    proc = subprocess.run(
        [require_virsh(), "-q", "-c", uri, "; ".join(commands)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"virsh failed: {proc.stderr}"
    return proc.stdout
