"""Xen through its command-line tools (run by a `Runner`, so tests point PATH at recording
scripts with the real argument syntax).

- topology and free memory: `xl info -n` (`--xl-info FILE` reads a saved output instead);
- domains: `xenstore-list /local/domain`, each domain's UUID from `/local/domain/D/vm`
  (`/vm/<uuid>`, the service's domain id) and its pools' actual sizes from
  `memory/vnode<N>/actual` (KiB), written by a NUMA-aware balloon driver;
- pool steps: `xenstore-write /local/domain/D/memory/vnode<N>/target KiB` (the keys the
  service's xenstore export uses), then `xl mem-set D <sum of the vnode targets>m`, which
  writes `memory/target` for the stock balloon driver;
- migrate: `xl migrate D <destination host>` (xl keeps the domain's vnuma `pnode=` binding; the
  destination re-pools through the settle steps);
- release: checks the domain left;
- start (a recovery's restart here): already running (xenstore) is done; else the xl.cfg file in
  `--xl-config-dir` (default /etc/xen, and its `auto/`) whose `uuid` is the domain's is created,
  `xl create FILE 'vnuma=[...]'`, its vnode specs' `pnode=` set to where the step says each
  vnode's memory now lives (xl appends a `KEY=VALUE` argument after the file, so it wins).

No `xl` (not a Xen dom0, or the tools not installed), an `xl info -n` that fails, or a
`--xl-info` file that is absent or not that output end the agent with one line (exit 3 for what
is missing on the machine, exit 2 for the file named on the command line).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from numa_balloon_agent.backends import xl_cfg
from numa_balloon_agent.backends.base import DomainReport
from numa_balloon_agent.backends.xl_info import XenNode, XlInfoError, parse_xl_info, slit
from numa_balloon_agent.runner import NOT_FOUND, CommandFailed, Runner
from numa_balloon_agent.steps import KIB_PER_MIB, Outcome, Step, not_ours
from numa_balloon_client import machine
from numa_balloon_client.programs.exits import Unavailable, UsageError

DEFAULT_CONFIG_DIR = Path("/etc/xen")


class XenBackend:
    name = "xen"

    def __init__(
        self,
        *,
        xl_info: Path | str | None = None,
        runner: Runner | None = None,
        config_dir: Path | str = DEFAULT_CONFIG_DIR,
    ) -> None:
        self.xl_info_file = Path(xl_info) if xl_info is not None else None
        self.run = runner or Runner()
        self.config_dir = Path(config_dir)

    def _nodes(self) -> list[XenNode]:
        if self.xl_info_file is not None:
            return self._saved_nodes(self.xl_info_file)
        try:
            text = self.run(["xl", "info", "-n"])
        except CommandFailed as exc:
            if exc.returncode == NOT_FOUND:
                raise Unavailable(
                    "the xen backend runs `xl`, which is not installed here (a Xen dom0 with "
                    "the Xen tools, e.g. xen-utils); or give --xl-info FILE"
                ) from exc
            raise Unavailable(str(exc)) from exc
        try:
            return parse_xl_info(text)
        except XlInfoError as exc:
            raise Unavailable(f"`xl info -n` printed what this agent cannot read: {exc}") from exc

    @staticmethod
    def _saved_nodes(path: Path) -> list[XenNode]:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise UsageError(f"--xl-info {path}: {reason}") from exc
        try:
            return parse_xl_info(text)
        except XlInfoError as exc:
            raise UsageError(f"--xl-info {path} is not `xl info -n` output: {exc}") from exc

    def external_id(self) -> str | None:
        """xl and xenstore run here, in dom0: the host is this machine."""
        return machine.external_id()

    def discover(self, *, name: str, reserved_mib: int) -> dict[str, Any]:
        nodes = self._nodes()
        pnodes = [
            {"memory_mib": n.memsize_mib, "reserved_mib": reserved_mib, "cpus": n.cpus}
            for n in nodes
        ]
        return {"name": name, "pnodes": pnodes, "distances": slit(nodes)}

    def free_mib(self) -> list[int]:
        return [n.memfree_mib for n in self._nodes()]

    def _read(self, key: str) -> str | None:
        try:
            return self.run(["xenstore-read", key]).strip()
        except CommandFailed:
            return None

    def _list(self, key: str) -> list[str]:
        try:
            return self.run(["xenstore-list", key]).split()
        except CommandFailed:
            return []

    def _domids(self) -> dict[str, str]:
        """Service domain id (UUID) -> Xen domid, for every guest (dom0 is not one)."""
        out = {}
        for domid in self._list("/local/domain"):
            if domid == "0":
                continue
            vm = self._read(f"/local/domain/{domid}/vm")
            if vm:
                out[vm.rsplit("/", 1)[-1]] = domid
        return out

    def _vnodes(self, domid: str) -> list[int]:
        names = self._list(f"/local/domain/{domid}/memory")
        return sorted(int(n[5:]) for n in names if n.startswith("vnode") and n[5:].isdigit())

    def domains(self) -> list[DomainReport]:
        out = []
        for uuid, domid in self._domids().items():
            vnodes = []
            for v in self._vnodes(domid):
                actual = self._read(f"/local/domain/{domid}/memory/vnode{v}/actual")
                if actual is not None and actual.isdigit():
                    vnodes.append({"index": v, "actual_mib": int(actual) // KIB_PER_MIB})
            if vnodes:
                out.append({"domain_id": uuid, "vnodes": vnodes})
        return out

    def apply(self, step: Step, *, dry_run: bool) -> Outcome:
        try:
            if step.is_pool_op:
                return self._pool(step, dry_run)
            if step.op == "migrate":
                return self._migrate(step, dry_run)
            if step.op == "start":
                return self._start(step, dry_run)
            if step.op == "release":
                gone = step.domain_id not in self._domids()
                where = "no longer runs here" if gone else "still runs here"
                return Outcome(True, gone, f"domain {step.domain_id} {where} (xenstore)")
        except CommandFailed as exc:
            return Outcome(True, False, str(exc))
        return Outcome(True, False, f"xen backend: unsupported op {step.op}")

    def _execute(self, commands: list[list[str]], dry_run: bool) -> str:
        if not dry_run:
            for argv in commands:
                self.run(argv)
        return "; ".join(shlex.join(c) for c in commands)

    def _pool(self, step: Step, dry_run: bool) -> Outcome:
        domid = self._domids().get(step.domain_id)
        if domid is None:
            return not_ours(f"domain {step.domain_id} does not run on this Xen host")
        assert step.vnode is not None and step.target_mib is not None
        base = f"/local/domain/{domid}/memory"
        targets = {}
        for v in self._vnodes(domid):
            value = self._read(f"{base}/vnode{v}/target")
            if value is not None and value.isdigit():
                targets[v] = int(value) // KIB_PER_MIB
        targets[step.vnode] = step.target_mib
        commands = [
            ["xenstore-write", f"{base}/vnode{step.vnode}/target", str(step.target_mib * 1024)],
            ["xl", "mem-set", domid, f"{sum(targets.values())}m"],
        ]
        return Outcome(False, True, self._execute(commands, dry_run))

    def _migrate(self, step: Step, dry_run: bool) -> Outcome:
        domid = self._domids().get(step.domain_id)
        dest = (step.destination or {}).get("host_name")
        if domid is None or not dest:
            return Outcome(True, False, "the domain is not here or the step names no destination")
        return Outcome(True, True, self._execute([["xl", "migrate", domid, dest]], dry_run))

    def _start(self, step: Step, dry_run: bool) -> Outcome:
        """A failover's restart: the domain's xl.cfg is created here with the new host's vnode
        binding. The definition (disks, network) is the operator's: a host without one fails
        the step naming where it looked and the export that gives its memory and vNUMA part."""
        if step.domain_id in self._domids():
            return Outcome(True, True, f"domain {step.domain_id} already runs here (xenstore)")
        found = xl_cfg.find_config(self.config_dir, step.domain_id)
        if found.path is None:
            return Outcome(True, False, _no_config(step.domain_id, self.config_dir, found.skipped))
        pnodes = _step_pnodes(step)
        try:
            specs = None if pnodes is None else xl_cfg.vnuma_with_pnodes(found.settings, pnodes)
        except xl_cfg.XlCfgError as exc:
            return Outcome(True, False, f"{found.path}: {exc}")
        path = str(found.path)
        argv = ["xl", "create", *(["-f", path] if "=" in path else [path])]
        if specs is not None:
            argv.append(xl_cfg.vnuma_setting(specs))
        detail = self._execute([argv], dry_run)
        if pnodes is None:
            detail += " (the step names no pnodes: the file's binding is kept)"
        elif specs is None:
            detail += f" (no vnuma in {path}: xl places the memory, not on pnodes {pnodes})"
        return Outcome(True, True, detail)

    def close(self) -> None:
        pass


def _step_pnodes(step: Step) -> list[int | None] | None:
    """Per vnode, the one pnode that backs it on this host (None: several or unknown, the
    file's `pnode=` stays), from the step's destination; None when the step names none."""
    nodesets = (step.destination or {}).get("nodesets")
    if not isinstance(nodesets, list):
        return None
    out: list[int | None] = []
    for ns in nodesets:
        one = isinstance(ns, list) and len(ns) == 1 and isinstance(ns[0], int)
        out.append(ns[0] if one else None)
    return out


def _no_config(domain_id: str, directory: Path, skipped: list[str]) -> str:
    why = f"; not read: {'; '.join(skipped)}" if skipped else ""
    return (
        f"no xl.cfg with uuid {domain_id} in {directory} (*.cfg) or {directory / 'auto'}{why}: "
        f"write one there (/v1/domains/{domain_id}/export?format=xl gives its memory and vNUMA "
        "part; its disks and network are the operator's)"
    )
