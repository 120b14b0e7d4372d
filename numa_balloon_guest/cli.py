"""`numa-balloon-guest`: the guest agent for Linux guests.

Exit codes (those of `numa-balloon`): 0 ok, 1 the service refused (the guest token), 2 usage,
3 unavailable (the service, with --once), 4 failed (the guest's nodes are not the domain's).
Each ordinary failure is one log line on stderr.
"""

from __future__ import annotations

import argparse
import os

from numa_balloon_client import Client
from numa_balloon_client.programs import logs
from numa_balloon_client.programs.exits import guarded
from numa_balloon_guest.agent import GuestAgent
from numa_balloon_guest.blocks import MemoryBlocks

PROG = "numa-balloon-guest"


def main(argv: list[str] | None = None) -> int:
    return guarded(PROG, lambda: _main(argv), logged=logs.active)


def _main(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--url", default=os.environ.get("NUMA_BALLOON_URL"))
    p.add_argument(
        "--token", default=os.environ.get("NUMA_BALLOON_GUEST_TOKEN"), help="the guest token"
    )
    p.add_argument("--sysfs-root", default="/", help="root of the sysfs tree (default /)")
    p.add_argument("--interval", type=float, default=10.0)
    p.add_argument("--once", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="log, change no block, report nothing")
    p.add_argument("--log-format", choices=("json", "text"), default="json")
    args = p.parse_args(argv)
    if not args.url or not args.token:
        p.error("--url and --token (or NUMA_BALLOON_URL, NUMA_BALLOON_GUEST_TOKEN) are needed")
    blocks = MemoryBlocks(args.sysfs_root)  # a root without sysfs nodes: usage, before logging
    logs.setup(args.log_format)
    with Client(args.url, args.token) as client:
        agent = GuestAgent(client, blocks, interval_s=args.interval, dry_run=args.dry_run)
        return agent.run(once=args.once)
