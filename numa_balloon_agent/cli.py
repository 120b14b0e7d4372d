"""`numa-balloon-agent discover|run`: the host agent's command line.

Every option can also come from a TOML file (`--config`, keys are the long option names with
underscores: `backend = "libvirt"`, `uri = "qemu:///system"`); the command line wins.

Exit codes (those of `numa-balloon`): 0 ok, 1 the service refused (a token, a name taken by
another machine's host), 2 usage (options, the config file, a path given that is not there),
3 unavailable (the service with --once, the hypervisor, its tools or binding), 4 failed. Each
ordinary failure is one line on stderr (a log record once `run` has set up logging).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tomllib
from pathlib import Path
from typing import Any

from numa_balloon_agent.agent import Agent, Settings, host_body
from numa_balloon_agent.backends.base import Backend
from numa_balloon_client import machine
from numa_balloon_client.programs import logs
from numa_balloon_client.programs.exits import UsageError, guarded

PROG = "numa-balloon-agent"
PATH_KEYS = ("state_dir", "xl_info", "xl_config_dir", "machine_id_file", "config")


def make_backend(args: argparse.Namespace) -> Backend:
    if args.backend == "sysfs":
        from numa_balloon_agent.backends.sysfs import SysfsBackend

        return SysfsBackend(args.sysfs_root)
    if args.backend == "libvirt":
        from numa_balloon_agent.backends.libvirt import LibvirtBackend

        return LibvirtBackend(args.uri, migrate_uri=args.migrate_uri, migration=args.migration)
    from numa_balloon_agent.backends.xen import XenBackend

    return XenBackend(xl_info=args.xl_info, config_dir=args.xl_config_dir)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML file with defaults for these options")
    p.add_argument("--backend", choices=("sysfs", "libvirt", "xen"), default="sysfs")
    p.add_argument("--sysfs-root", default="/", help="root of the sysfs tree (default /)")
    p.add_argument("--uri", default="qemu:///system", help="libvirt connection URI")
    p.add_argument("--xl-info", type=Path, help="read a saved `xl info -n` output")
    p.add_argument(
        "--xl-config-dir",
        type=Path,
        default=Path("/etc/xen"),
        help="xen: where the domains' xl.cfg files are (*.cfg and auto/), for a restart's "
        "`xl create` (default /etc/xen)",
    )
    p.add_argument("--name", default=None, help="host name (default: this machine's hostname)")
    p.add_argument(
        "--reserved-mib",
        type=int,
        default=None,
        help="MiB per pnode held back for the host (default: proposed per pnode from what the "
        "host uses now, less its running guests, rounded up to 64 MiB)",
    )
    p.add_argument(
        "--migrate-uri",
        default="qemu+ssh://{host}/system",
        help="libvirt: destination URI, {host} = the destination host's name",
    )
    p.add_argument("--migration", choices=("live", "cold"), default="live")
    p.add_argument(
        "--external-id",
        default=None,
        help="the host's external_id, by which the agent finds the host registered for this "
        "machine (default: derived from the machine id; see --machine-id-file)",
    )
    p.add_argument(
        "--machine-id-file",
        type=Path,
        default=None,
        help="derive the external_id from this machine-id file (default: the backend's "
        "machine: <sysfs-root>/etc/machine-id, or /etc/machine-id for local libvirt and xen)",
    )


def parser(defaults: dict[str, Any] | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("discover", help="print this host's POST /v1/hosts body as JSON")
    _common(d)
    r = sub.add_parser("run", help="register, then observe, report and carry out steps")
    _common(r)
    r.add_argument("--url", default=os.environ.get("NUMA_BALLOON_URL"))
    r.add_argument(
        "--token",
        default=os.environ.get("NUMA_BALLOON_TOKEN"),
        help="admin token, needed only to register the host the first time",
    )
    r.add_argument("--state-dir", type=Path, default=Path("/var/lib/numa-balloon-agent"))
    r.add_argument("--interval", type=float, default=10.0, help="seconds between cycles")
    r.add_argument("--once", action="store_true", help="one full cycle, then exit")
    r.add_argument("--dry-run", action="store_true", help="log actions, acknowledge nothing")
    r.add_argument("--log-format", choices=("json", "text"), default="json")
    r.add_argument(
        "--log-level", type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR"), default="INFO"
    )
    for sub_parser in (d, r):
        sub_parser.set_defaults(**(defaults or {}))
    return p


def read_config(path: Path) -> dict[str, Any]:
    """The TOML file's keys as option destinations; every key must name a long option."""
    try:
        config: dict[str, Any] = tomllib.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"--config {path}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config {path} is not TOML: {exc}") from exc
    options = {a.dest for s in _subparsers(parser()) for a in s._actions}
    out = {k.replace("-", "_"): v for k, v in config.items()}
    unknown = sorted(set(out) - options - {"help"})
    if unknown:
        raise UsageError(f"--config {path}: unknown key(s) {', '.join(unknown)}")
    for key in PATH_KEYS:
        if key in out:
            out[key] = Path(out[key])
    return out


def _subparsers(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    actions = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    return list(actions[0].choices.values())


def _check_choices(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A config file's values skip argparse's checks of choices: check them here."""
    for sub in _subparsers(p):
        for action in sub._actions:
            value = getattr(args, action.dest, None)
            if action.choices is not None and value is not None and value not in action.choices:
                choices = ", ".join(map(str, action.choices))
                raise UsageError(f"--config: {action.dest} = {value!r} is not one of {choices}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    args = parser().parse_args(argv)
    if args.config is None:
        return args
    p = parser(read_config(args.config))
    args = p.parse_args(argv)
    _check_choices(p, args)
    return args


def external_id(args: argparse.Namespace) -> str | None:
    """--external-id as given, else derived from --machine-id-file; None: the backend's."""
    if args.external_id:
        return str(args.external_id)
    if args.machine_id_file is None:
        return None
    found = machine.external_id(args.machine_id_file)
    if found is None:
        raise UsageError(
            f"--machine-id-file {args.machine_id_file}: no machine id in it (32 hex digits, "
            "as systemd writes /etc/machine-id)"
        )
    return found


def main(argv: list[str] | None = None) -> int:
    return guarded(PROG, lambda: _main(argv), logged=logs.active)


def _main(argv: list[str] | None) -> int:
    args = parse(argv)
    name = args.name or socket.gethostname()
    identity = external_id(args)
    if args.command == "run":
        if not args.url:
            raise UsageError("run needs --url (or NUMA_BALLOON_URL, or url in --config)")
        logs.setup(args.log_format, args.log_level)
    backend = make_backend(args)
    if args.command == "discover":
        try:
            body = host_body(backend, name, args.reserved_mib, identity)
        finally:
            backend.close()
        json.dump(body, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    settings = Settings(
        url=args.url,
        admin_token=args.token,
        name=name,
        state_dir=args.state_dir,
        reserved_mib=args.reserved_mib,
        interval_s=args.interval,
        dry_run=args.dry_run,
        external_id=identity,
    )
    agent = Agent(backend, settings)
    try:
        return agent.run(once=args.once)
    finally:
        agent.close()
