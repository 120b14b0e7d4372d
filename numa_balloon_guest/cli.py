"""`numa-balloon-guest`: the guest agent for Linux guests."""

from __future__ import annotations

import argparse
import os

from numa_balloon_agent import logs
from numa_balloon_client import Client
from numa_balloon_guest.agent import GuestAgent
from numa_balloon_guest.blocks import MemoryBlocks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="numa-balloon-guest", description=__doc__)
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
    logs.setup(args.log_format)
    with Client(args.url, args.token) as client:
        agent = GuestAgent(
            client, MemoryBlocks(args.sysfs_root), interval_s=args.interval, dry_run=args.dry_run
        )
        return agent.run(once=args.once)
