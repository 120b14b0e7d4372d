"""A private libvirt: virtlogd and libvirtd (the qemu driver, as root) whose configuration,
sockets, state, logs and domain definitions all live in one temporary directory.

libvirtd's system mode has its paths compiled in (/etc/libvirt, /run/libvirt, /var/lib/libvirt,
/var/log/libvirt, /var/cache/libvirt; the qemu driver also takes a lock in /run/libvirt/qemu, so
two daemons cannot share them). Both daemons therefore start in a mount namespace of their own
(`unshare --mount --propagation private`) in which those directories are bind mounts of the
temporary directory's subdirectories; the QEMU processes inherit it. Nothing of it is visible
outside, and the mounts end with the namespace's last process. The capabilities cache (QEMU
probed once) is the one directory kept between runs, under `var/`.

Clients reach the daemon through the socket it makes in `<workdir>/run`:
``qemu:///system?socket=<workdir>/run/libvirt-sock``. Two of them are two hosts to libvirt (each
has its own `host_uuid`), so a guest can migrate from one to the other
(``qemu+unix:///system?socket=...``, `migrate_uri`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

#: host path -> subdirectory of the work directory mounted on it (the cache is separate).
MOUNTS = {
    "/etc/libvirt": "etc",
    "/run/libvirt": "run",
    "/var/lib/libvirt": "lib",
    "/var/log/libvirt": "log",
}
CACHE_MOUNT = "/var/cache/libvirt"

LIBVIRTD_CONF = """\
# The socket directory is the bind mount of <workdir>/run: clients outside the namespace use
# qemu:///system?socket=<workdir>/run/libvirt-sock. Only root may connect, without polkit.
unix_sock_dir = "/run/libvirt"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
# Each private daemon is a host of its own: libvirt refuses a migration between two daemons
# with the same host UUID ("Attempt to migrate guest to the same host").
host_uuid = "{host_uuid}"
"""
VIRTLOGD_CONF = 'log_outputs = "3:file:/var/log/libvirt/virtlogd.log"\n'
QEMU_CONF = """\
# QEMU runs as root so it reads the kernel and initrd under var/ where they are; no relabelling,
# no cgroups and no extra namespaces, so a killed run leaves nothing behind on the host.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
# The guest's one way out is a user-mode network guestfwd whose `cmd:` QEMU runs for each
# connection (a relay to the service on 127.0.0.1); libvirt's default seccomp filter forbids
# QEMU to spawn anything (the chardev form spawns nothing but carries one connection per QEMU).
seccomp_sandbox = 0
# Migrations between the daemons go to this machine's hostname (libvirt refuses a loopback
# address for migration_host and migration_address alike).
"""

UNSHARE = ["unshare", "--mount", "--propagation", "private", "--"]
# Runs inside the new mount namespace: $1 the work directory, $2 the capabilities cache.
NAMESPACE_SCRIPT = """\
set -e
mount --bind "$1/etc" /etc/libvirt
mount --bind "$1/run" /run/libvirt
mount --bind "$1/lib" /var/lib/libvirt
mount --bind "$1/log" /var/log/libvirt
mount --bind "$2" /var/cache/libvirt
/usr/sbin/virtlogd -d -f /etc/libvirt/virtlogd.conf -p /run/libvirt/virtlogd.pid
exec /usr/sbin/libvirtd -f /etc/libvirt/libvirtd.conf -p /run/libvirt/libvirtd.pid
"""


def binding() -> Any:
    """The libvirt Python binding (imported late: `e2e.system` may have just built it)."""
    return importlib.import_module("libvirt")


class PrivateLibvirt:
    """`with PrivateLibvirt(workdir, cache) as lv:` ... `lv.uri`; on exit every domain is
    destroyed, both daemons stopped and any QEMU they left killed, also after an error or
    Ctrl-C."""

    def __init__(
        self, workdir: Path, cache: Path, *, timeout_s: float = 90.0, host_uuid: str | None = None
    ) -> None:
        self.workdir = workdir
        self.cache = cache
        self.timeout_s = timeout_s
        self.host_uuid = host_uuid or str(uuid.uuid4())
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.workdir / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu:///system?socket={self.socket}"

    @property
    def migrate_uri(self) -> str:
        """The URI another daemon's migration reaches this one by: libvirt refuses a
        peer-to-peer migration to a URI without a host unless its transport is `unix` with an
        explicit socket (virDomainMigrateCheckNotLocal)."""
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "log"

    # --- start -------------------------------------------------------------------------------

    def __enter__(self) -> PrivateLibvirt:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _write_config(self) -> None:
        for sub in (*MOUNTS.values(), "run/qemu"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.cache.mkdir(parents=True, exist_ok=True)
        etc = self.workdir / "etc"
        (etc / "libvirtd.conf").write_text(LIBVIRTD_CONF.format(host_uuid=self.host_uuid))
        (etc / "virtlogd.conf").write_text(VIRTLOGD_CONF)
        (etc / "qemu.conf").write_text(QEMU_CONF)
        # The mount points themselves: the directories libvirt's own packages would create.
        for path in (*MOUNTS, CACHE_MOUNT):
            Path(path).mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self._write_config()
        with open(self.log_dir / "daemons.out", "wb") as out:
            self.proc = subprocess.Popen(
                [*UNSHARE, "sh", "-c", NAMESPACE_SCRIPT, "sh", str(self.workdir), str(self.cache)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the runner, which stops us in order
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        libvirt = binding()
        deadline = time.monotonic() + self.timeout_s
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"libvirtd exited {self.proc.returncode}: {self.tail()}")
            if self.socket.exists():
                try:
                    conn = libvirt.open(self.uri)
                except libvirt.libvirtError:
                    pass
                else:
                    conn.close()
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"libvirtd not ready after {self.timeout_s:.0f} s: {self.tail()}"
                )
            time.sleep(0.1)

    def tail(self, lines: int = 20) -> str:
        """The end of the daemons' own output and of libvirtd's log, for error messages."""
        out = []
        for name in ("daemons.out", "libvirtd.log"):
            path = self.log_dir / name
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {path}\n" + "\n".join(text))
        return "\n".join(out)

    def open(self) -> Any:
        libvirt = binding()
        return libvirt.open(self.uri)

    # --- stop --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Destroy every domain, stop libvirtd, then virtlogd, then kill any QEMU still there
        (each by the pid its daemon recorded, checked against the process's name)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._destroy_domains()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        _kill_recorded(self.workdir / "run" / "virtlogd.pid", "virtlogd", signal.SIGTERM)
        for pidfile in sorted((self.workdir / "run" / "qemu").glob("*.pid")):
            _kill_recorded(pidfile, "qemu", signal.SIGKILL)
        self.proc = None

    def _destroy_domains(self) -> None:
        libvirt = binding()
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError:
            return
        try:
            for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                # gone meanwhile, or not: its pid file says if a QEMU is left
                with contextlib.suppress(libvirt.libvirtError):
                    dom.destroy()
        finally:
            conn.close()

    def remove(self) -> None:
        """Delete the work directory (after `stop`)."""
        shutil.rmtree(self.workdir, ignore_errors=True)


def _kill_recorded(pidfile: Path, name: str, sig: signal.Signals, wait_s: float = 10) -> None:
    """Signal the process a daemon recorded in `pidfile` if it still runs under `name`, and
    wait for it to go."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    if not _is(pid, name):
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait_s
    while _is(pid, name) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _is(pid, name):
        os.kill(pid, signal.SIGKILL)


def _is(pid: int, name: str) -> bool:
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return comm.startswith(name) and state != "Z"
