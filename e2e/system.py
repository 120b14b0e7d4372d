"""What the run needs from the machine: Debian packages (installed with apt when missing), the
libvirt Python binding (built with pip against the system's libvirt) and the `libvirt-qemu`
user. A machine that cannot have them raises :class:`Unavailable`, which the runner turns into
a failure under CI and a skip elsewhere."""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

#: Debian package -> a file of it the run uses (present = installed and usable).
PACKAGES = {
    "qemu-system-x86": "/usr/bin/qemu-system-x86_64",
    "libvirt-daemon": "/usr/sbin/libvirtd",  # and /usr/sbin/virtlogd
    "libvirt-daemon-driver-qemu": "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/"
    "libvirt_driver_qemu.so",
    "busybox-static": "/bin/busybox",
    "util-linux": "/usr/bin/unshare",
    "kmod": "/usr/sbin/depmod",  # indexes the guest kernel's modules (e2e.kernel)
    # The libvirt binding is built against the system's libvirt.
    "libvirt-dev": "/usr/include/libvirt/libvirt.h",
    "pkg-config": "/usr/bin/pkg-config",
    "gcc": "/usr/bin/gcc",
}
#: The package without which nothing here can run; its absence from apt is the one reason to
#: skip (outside CI) rather than fail.
QEMU_PACKAGE = "qemu-system-x86"
#: libvirt 9.0 resolves this compiled-in user before it reads qemu.conf; Debian creates it in
#: libvirt-daemon-system, which the run does not install (it would start the system daemons).
QEMU_USER = "libvirt-qemu"


Say = Callable[[str], None]


class Unavailable(Exception):
    """This machine cannot run the real guest; the message says why."""


def run(argv: Sequence[str], *, cwd: Path | None = None) -> str:
    """Run a command to completion; its stdout, or RuntimeError with the tail of its stderr."""
    proc = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}"
        )
    return proc.stdout


def missing(packages: Iterable[str] = PACKAGES) -> list[str]:
    return [p for p in packages if not os.path.exists(PACKAGES.get(p, "/nonexistent"))]


def apt_candidate(package: str) -> str | None:
    """The version apt would install, or None (unknown package, or no lists yet)."""
    try:
        out = run(["apt-cache", "policy", package])
    except RuntimeError:
        return None
    for line in out.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Candidate":
            value = value.strip()
            return None if value in ("", "(none)") else value
    return None


def apt_install(packages: Sequence[str], say: Say) -> None:
    if os.geteuid() != 0:
        raise Unavailable(f"not root: install {' '.join(packages)} (or run make e2e as root)")
    if shutil.which("apt-get") is None:
        raise Unavailable(f"no apt-get to install {' '.join(packages)}")
    if any(apt_candidate(p) is None for p in packages):
        say("apt-get update")
        run(["apt-get", "update", "-qq"])
    if apt_candidate(QEMU_PACKAGE) is None:
        raise Unavailable(f"apt has no {QEMU_PACKAGE} package for this machine")
    say(f"apt-get install {' '.join(packages)}")
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages])


def ensure_qemu_user(say: Say) -> None:
    try:
        pwd.getpwnam(QEMU_USER)
    except KeyError:
        say(f"useradd {QEMU_USER}")
        home = ["--home-dir", "/var/lib/libvirt", "--shell", "/usr/sbin/nologin"]
        run(["useradd", "--system", "--user-group", "--no-create-home", *home, QEMU_USER])


def ensure_binding(requirement: str, say: Say) -> None:
    """`import libvirt` in this interpreter, building the binding with pip when missing."""
    if importlib.util.find_spec("libvirt") is not None:
        return
    say(f"pip install {requirement} (built against the system's libvirt)")
    run([sys.executable, "-m", "pip", "install", "-q", requirement])
    importlib.invalidate_caches()


def prepare(libvirt_python: str, say: Say) -> None:
    """Everything the machine needs, each missing piece announced as it is installed."""
    if sys.platform != "linux":
        raise Unavailable(f"a Linux host is needed, not {sys.platform}")
    absent = missing()
    if absent:
        apt_install(absent, say)
        still = missing(absent)
        if still:
            raise RuntimeError(f"installed {' '.join(absent)} but {still} still lack their files")
    if os.geteuid() != 0:
        raise Unavailable("the private libvirtd needs root (a mount namespace, the qemu driver)")
    ensure_qemu_user(say)
    ensure_binding(libvirt_python, say)
