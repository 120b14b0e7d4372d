"""HTTP benchmark: PUT /v1/domains/{id}/target and GET /v1/domains/{id} against GET /healthz.

One uvicorn worker per backend (SQLite, then PostgreSQL), closed-loop clients over keep-alive
connections. /healthz on the same server in the same run is the framework's own ceiling on this
machine; `ratio` is put-target rps over healthz rps.

`put-target` is the worst case: every client retargets its own domain but all the domains sit on
one host, so every write takes that host's lock (per-host serialization is what guarantees no
overcommit). `put-spread` is the same load over one domain per host. The last line is the
headline, for the worst case:

    http put-target postgres c16: rps=<float> p99_ms=<float> healthz_rps=<float> ratio=<float>

    python -m bench.http [--seconds 5] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.load import scratch_postgres
from bench.server import Server

Request = Callable[[httpx.AsyncClient, int], Any]


async def _measure(url: str, token: str, req: Request, clients: int, seconds: float) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as c:

        async def loop(i: int) -> None:
            nonlocal errors
            n = 0
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                r = await req(c, i * 100_000 + n)
                latencies.append(time.perf_counter() - t0)
                if r.status_code >= 300:
                    errors += 1
                n += 1

        # warm-up, then the measured window
        deadline = time.perf_counter() + min(1.0, seconds / 3)
        await asyncio.gather(*(loop(i) for i in range(clients)))
        latencies.clear()
        errors = 0
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(loop(i) for i in range(clients)))
        elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{errors} requests failed during the benchmark")
    return [len(latencies) / elapsed, *latencies]


def _stats(samples: list[float]) -> tuple[float, float, float]:
    rps, lat = samples[0], np.array(samples[1:]) * 1000
    return rps, float(np.percentile(lat, 50)), float(np.percentile(lat, 99))


def _make_host(c: httpx.Client, name: str) -> str:
    r = c.post(
        "/v1/hosts",
        json={
            "name": name,
            "pnodes": [{"memory_mib": 262144, "reserved_mib": 0, "cpus": 32}] * 2,
            "distances": [[10, 21], [21, 10]],
        },
    )
    r.raise_for_status()
    return str(r.json()["id"])


def _make_domain(c: httpx.Client, name: str, host_id: str) -> str:
    body = {
        "name": name,
        "host_id": host_id,
        "memory": {"dynamic_min_mib": 2048, "dynamic_max_mib": 8192, "target_mib": 8192},
        "vnodes": [
            {"size_mib": 4096, "vcpus": [0, 1], "distances": [10, 21]},
            {"size_mib": 4096, "vcpus": [2, 3], "distances": [21, 10]},
        ],
    }
    r = c.post("/v1/domains", json=body)
    r.raise_for_status()
    return str(r.json()["id"])


def bench_backend(db_url: str, clients: int, seconds: float) -> dict[str, tuple[float, ...]]:
    """Same host: every client retargets its own domain, all on one host, so every write takes
    the same host lock (serialized by design: the worst case). Spread: one domain per host."""
    with Server(db_url, workers=1) as srv:
        token = srv.admin_token
        with httpx.Client(
            base_url=srv.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as c:
            host = _make_host(c, "bench")
            ids = [_make_domain(c, f"vm{i}", host) for i in range(clients)]
            spread = [
                _make_domain(c, f"spread{i}", _make_host(c, f"bench{i}")) for i in range(clients)
            ]

        def put_target(c: httpx.AsyncClient, n: int) -> Any:
            target = 2048 + 128 * (n % 48)
            return c.put(f"/v1/domains/{ids[n // 100_000]}/target", json={"target_mib": target})

        def put_spread(c: httpx.AsyncClient, n: int) -> Any:
            target = 2048 + 128 * (n % 48)
            return c.put(f"/v1/domains/{spread[n // 100_000]}/target", json={"target_mib": target})

        def get_domain(c: httpx.AsyncClient, n: int) -> Any:
            return c.get(f"/v1/domains/{ids[n // 100_000]}")

        def healthz(c: httpx.AsyncClient, n: int) -> Any:
            return c.get("/healthz")

        out: dict[str, tuple[float, ...]] = {}
        for name, req in (
            ("healthz", healthz),
            ("get-domain", get_domain),
            ("put-target", put_target),
            ("put-spread", put_spread),
        ):
            out[name] = _stats(asyncio.run(_measure(srv.url, token, req, clients, seconds)))
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description="HTTP throughput and latency")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=16)
    args = ap.parse_args()
    results: dict[str, dict[str, tuple[float, ...]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        from service.db.migrations import upgrade

        sqlite_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(sqlite_url)
        results["sqlite"] = bench_backend(sqlite_url, args.clients, args.seconds)
    with scratch_postgres() as pg_url:
        results["postgres"] = bench_backend(pg_url, args.clients, args.seconds)
    c = args.clients
    print(f"{'backend':<10}{'route':<12}{'clients':>8}{'rps':>10}{'p50_ms':>10}{'p99_ms':>10}")
    for backend, rows in results.items():
        for route, (rps, p50, p99) in rows.items():
            print(f"{backend:<10}{route:<12}{c:>8}{rps:>10.1f}{p50:>10.2f}{p99:>10.2f}")
    last = ""
    for backend in ("sqlite", "postgres"):
        h = results[backend]["healthz"][0]
        for route in ("put-spread", "put-target"):
            rps, _, p99 = results[backend][route]
            line = (
                f"http {route} {backend} c{c}: rps={rps:.1f} p99_ms={p99:.2f} "
                f"healthz_rps={h:.1f} ratio={rps / h:.3f}"
            )
            if (backend, route) == ("postgres", "put-target"):
                last = line
            else:
                print(line)
    print(last)


if __name__ == "__main__":
    main()
