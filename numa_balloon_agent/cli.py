"""`numa-balloon-agent discover|run`: the host agent's command line.

Every option can also come from a TOML file (`--config`, keys are the long option names with
underscores: `backend = "libvirt"`, `uri = "qemu:///system"`); the command line wins.
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

from numa_balloon_agent import logs
from numa_balloon_agent.agent import Agent, Settings
from numa_balloon_agent.backends.base import Backend


def make_backend(args: argparse.Namespace) -> Backend:
    if args.backend == "sysfs":
        from numa_balloon_agent.backends.sysfs import SysfsBackend

        return SysfsBackend(args.sysfs_root)
    if args.backend == "libvirt":
        from numa_balloon_agent.backends.libvirt import LibvirtBackend

        return LibvirtBackend(args.uri, migrate_uri=args.migrate_uri, migration=args.migration)
    from numa_balloon_agent.backends.xen import XenBackend

    return XenBackend(xl_info=args.xl_info)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML file with defaults for these options")
    p.add_argument("--backend", choices=("sysfs", "libvirt", "xen"), default="sysfs")
    p.add_argument("--sysfs-root", default="/", help="root of the sysfs tree (default /)")
    p.add_argument("--uri", default="qemu:///system", help="libvirt connection URI")
    p.add_argument("--xl-info", type=Path, help="read a saved `xl info -n` output")
    p.add_argument("--name", default=None, help="host name (default: this machine's hostname)")
    p.add_argument("--reserved-mib", type=int, default=0, help="MiB per pnode held back")
    p.add_argument(
        "--migrate-uri",
        default="qemu+ssh://{host}/system",
        help="libvirt: destination URI, {host} = the destination host's name",
    )
    p.add_argument("--migration", choices=("live", "cold"), default="live")


def parser(defaults: dict[str, Any] | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="numa-balloon-agent", description=__doc__.splitlines()[0])
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
    r.add_argument("--log-level", default="INFO")
    r.add_argument("--machine-id-file", type=Path, default=Path("/etc/machine-id"))
    for sub_parser in (d, r):
        sub_parser.set_defaults(**(defaults or {}))
    return p


def parse(argv: list[str] | None) -> argparse.Namespace:
    args = parser().parse_args(argv)
    if args.config is None:
        return args
    config: dict[str, Any] = tomllib.loads(args.config.read_text())
    for key in ("state_dir", "xl_info", "machine_id_file"):
        if key in config:
            config[key] = Path(config[key])
    return parser({k.replace("-", "_"): v for k, v in config.items()}).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    name = args.name or socket.gethostname()
    backend = make_backend(args)
    try:
        if args.command == "discover":
            body = backend.discover(name=name, reserved_mib=args.reserved_mib)
            json.dump(body, sys.stdout, indent=2)
            sys.stdout.write("\n")
            return 0
        if not args.url:
            raise SystemExit("run needs --url (or NUMA_BALLOON_URL)")
        logs.setup(args.log_format, args.log_level)
        settings = Settings(
            url=args.url,
            admin_token=args.token,
            name=name,
            state_dir=args.state_dir,
            reserved_mib=args.reserved_mib,
            interval_s=args.interval,
            dry_run=args.dry_run,
            machine_id_file=args.machine_id_file,
        )
        return Agent(backend, settings).run(once=args.once)
    finally:
        backend.close()
