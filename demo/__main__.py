"""`python -m demo --local` (SQLite, processes on localhost) or `python -m demo --url URL`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from demo.story import Story
from numa_balloon_client import Client, NumaBalloonError, RetryPolicy

if TYPE_CHECKING:  # --local only: the image runs `--url` and has no launcher (numa_balloon_testing)
    from demo.local import LocalService


def ready(url: str) -> bool:
    """`GET /readyz` answered 200 (one attempt: the caller polls)."""
    with Client(url, timeout_s=2, retry=RetryPolicy(attempts=1)) as nb:
        try:
            nb.readyz()
        except NumaBalloonError:
            return False
    return True


def wait_ready(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if ready(url):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{url}/readyz did not answer 200 within {timeout_s:.0f} s")
        time.sleep(0.5)


def play(url: str, token: str, seed: int, summary_json: str | None) -> int:
    with Client(url, token, timeout_s=30) as nb:
        summary = Story(nb, seed=seed).play()
    if summary_json:
        Path(summary_json).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    ok = (
        summary["migration"]["state"] == "completed"
        and summary["abort"]["state"] == "aborted"
        and not summary["audit_problems"]
        and summary["claimed_mib_total"] == 0
    )
    return 0 if ok else 1


def serve(svc: LocalService) -> None:
    """Leave the demo cluster up for a look: Swagger UI, the topology view, the events."""
    print(
        f"\n  The demo cluster stays up: Swagger UI {svc.url}/docs   topology view {svc.url}/ui"
        f"\n  admin token: {svc.token}"
        "\n  Ctrl-C stops the service (the SQLite database goes with it).\n",
        flush=True,
    )
    try:
        while svc.proc is not None and svc.proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping", flush=True)


def play_real_local(
    workdir: str | None, summary_json: str | None, port: int | None, stay: bool
) -> int:
    from demo.local import LocalService
    from demo.real_agents import play_real

    with tempfile.TemporaryDirectory(prefix="numa-balloon-demo-") as tmp:
        base = Path(workdir) if workdir else Path(tmp)
        with LocalService(base / "service", port=port) as svc:
            print(f"numa-balloon on {svc.url}, with the real agents")
            summary = play_real(svc.url, svc.token, base)
            if stay:
                serve(svc)
    if summary_json:
        Path(summary_json).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(f"summary: {json.dumps(summary, sort_keys=True)}")
    ok = summary["migration"] == "completed" and summary["steps_done"]
    return 0 if ok and summary["guest_online_mib"] == summary["target_mib"] else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", action="store_true", help="start the service on SQLite here")
    where.add_argument("--url", default=os.environ.get("NUMA_BALLOON_URL"))
    p.add_argument("--token", default=os.environ.get("NUMA_BALLOON_ADMIN_TOKEN"))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--workdir", help="with --local: keep the database here (default: a temp dir)")
    p.add_argument("--summary-json", help="also write the summary as JSON to this file")
    p.add_argument(
        "--wait-s", type=float, default=120, help="with --url: wait this long for /readyz"
    )
    p.add_argument(
        "--serve",
        action="store_true",
        help="with --local: keep the service and the demo cluster running after the story, "
        "until Ctrl-C",
    )
    p.add_argument("--port", type=int, help="with --local: listen here (default: a free port)")
    p.add_argument(
        "--agents",
        choices=("simulated", "real"),
        default="simulated",
        help="real: numa-balloon-agent on libvirt's test driver and a sysfs tree, and the guest "
        "agent on a memory-block tree (needs the libvirt binding)",
    )
    args = p.parse_args(argv)
    if args.agents == "real":
        return play_real_local(args.workdir, args.summary_json, args.port, args.serve)
    if args.local:
        from demo.local import LocalService

        with tempfile.TemporaryDirectory(prefix="numa-balloon-demo-") as tmp:
            workdir = Path(args.workdir) if args.workdir else Path(tmp)
            with LocalService(workdir, port=args.port) as svc:
                print(f"numa-balloon on {svc.url} (SQLite {svc.db_url.removeprefix('sqlite:///')})")
                code = play(svc.url, svc.token, args.seed, args.summary_json)
                if args.serve:
                    serve(svc)
                return code
    if not args.token:
        p.error("--url needs --token or NUMA_BALLOON_ADMIN_TOKEN")
    wait_ready(args.url, args.wait_s)
    print(f"numa-balloon on {args.url}")
    return play(args.url, args.token, args.seed, args.summary_json)


if __name__ == "__main__":
    sys.exit(main())
