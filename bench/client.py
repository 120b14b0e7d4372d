"""What the client costs on top of bare httpx: CPU per request in the calling process.

`GET /v1/domains/{id}` (a 2-vnode domain) against a real uvicorn on SQLite, three ways: httpx
with `.json()`, `Client.get_domain` (auth, ETag bookkeeping, retry wrapper, the generated pydantic
model) and `AsyncClient.get_domain`. Only this process's CPU is counted (`time.process_time`), so
the server's speed barely moves the figures; the three ways run in interleaved rounds and each
figure is the median round. Wall-clock rps is printed for context only. The headline, last:

    client get_domain: httpx_cpu_ms=<f> client_cpu_ms=<f> async_cpu_ms=<f> overhead_ms=<f>

    python -m bench.client [--requests 500] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

import httpx

from numa_balloon_client import AsyncClient, Client
from numa_balloon_testing.server import ROOT, Server

ROUNDS = 3
DOMAIN = {
    "name": "bench-client",
    "memory": {"dynamic_min_mib": 1024, "dynamic_max_mib": 4096, "target_mib": 2048},
    "vnodes": [
        {"size_mib": 2048, "vcpus": [0, 1], "distances": [10, 20]},
        {"size_mib": 2048, "vcpus": [2, 3], "distances": [20, 10]},
    ],
}


def measure(n: int, call: Callable[[], object]) -> tuple[float, float]:
    """(CPU ms per request in this process, wall-clock rps) over n calls after a warm-up."""
    for _ in range(10):
        call()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        call()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return 1000 * cpu / n, n / wall


def run(n: int) -> dict[str, tuple[float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        env = {**os.environ, "NUMA_BALLOON_DATABASE_URL": url}
        subprocess.run(
            [sys.executable, "-m", "service.cli", "migrate"],
            cwd=ROOT,
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        with Server(url) as srv, Client(srv.url, srv.admin_token) as nb:
            host = nb.create_host(
                {
                    "name": "h",
                    "pnodes": [{"memory_mib": 8192, "cpus": 4}] * 2,
                    "distances": [[10, 21], [21, 10]],
                }
            )
            did = nb.create_domain({**DOMAIN, "host_id": host.id}).id
            headers = {"Authorization": f"Bearer {srv.admin_token}"}
            rounds: dict[str, list[tuple[float, float]]] = {"httpx": [], "client": [], "async": []}
            with httpx.Client(base_url=srv.url, headers=headers) as raw:
                for _ in range(ROUNDS):
                    rounds["httpx"].append(measure(n, lambda: raw.get(f"/v1/domains/{did}").json()))
                    rounds["client"].append(measure(n, lambda: nb.get_domain(did)))
                    rounds["async"].append(asyncio.run(_async(srv, did, n)))
            out = {k: (median(c for c, _ in v), median(r for _, r in v)) for k, v in rounds.items()}
    return out


async def _async(srv: Server, did: str, n: int) -> tuple[float, float]:
    async with AsyncClient(srv.url, srv.admin_token) as nb:
        for _ in range(10):
            await nb.get_domain(did)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(n):
            await nb.get_domain(did)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return 1000 * cpu / n, n / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--quick", action="store_true", help="50 requests (the test's size)")
    args = ap.parse_args()
    n = 50 if args.quick else args.requests
    res = run(n)
    print(f"{'way':<8}{'cpu ms/request':>16}{'rps':>8}")
    for way, (cpu, rps) in res.items():
        print(f"{way:<8}{cpu:>16.3f}{rps:>8.0f}")
    h, c, a = res["httpx"][0], res["client"][0], res["async"][0]
    print(
        f"client get_domain: httpx_cpu_ms={h:.3f} client_cpu_ms={c:.3f} async_cpu_ms={a:.3f} "
        f"overhead_ms={c - h:.3f}"
    )


if __name__ == "__main__":
    main()
