"""HTTP benchmark: PUT /v1/domains/{id}/target and GET /v1/domains/{id} against GET /healthz.

One uvicorn worker per backend (SQLite, then PostgreSQL), closed-loop clients over keep-alive
connections. /healthz on the same server in the same run is the framework's own ceiling on this
machine; `ratio` is put-target rps over healthz rps.

The measuring client is a bare HTTP/1.1 loop on asyncio streams, on purpose, and stays one:
it measures the server, so it must cost next to nothing. (The set-up, which is not timed, uses
numa_balloon_client like every other script.) httpx spends ~2 ms of CPU per request here, so
with it /healthz measured the client (one core at 100%, the server at 25%), not the framework,
and every ratio came out 3-6x too flattering. The table prints both sides' CPU per
request so that anyone can check the client is not the bottleneck. Routes run in interleaved
rounds (the machine's speed drifts by tens of percent over a minute); rps is the median round,
latencies are pooled over all rounds.

`put-target` is the worst case: every client retargets its own domain but all the domains sit on
one host, so every write takes that host's lock (per-host serialization is what guarantees no
overcommit). `put-spread` is the same load over one domain per host. `open100` offers the
worst case at a fixed 100 requests/s (open loop: queueing counts). The last two lines are the
headlines:

    http put-target postgres open100: p99_ms=<float> server_cpu_ms=<float>
    http put-target postgres c16: rps=<float> p99_ms=<float> healthz_rps=<float> ratio=<float>

    python -m bench.http [--seconds 4] [--rounds 3] [--clients 16] [--backend postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.load import scratch_postgres
from numa_balloon_client import Client
from numa_balloon_testing.server import Server

OPEN_LOOP_RPS = 100.0  # what an orchestrator offers a busy but not saturated service
OPEN = f"open{OPEN_LOOP_RPS:.0f}"
# (client index, request number) -> the request's bytes
Request = Callable[[int, int], bytes]


class BadResponse(RuntimeError):
    pass


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> int:
    """Send one request, read the whole response; returns the status."""
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        raise BadResponse(f"no Content-Length in {head[:200]!r}")
    end = lower.find(b"\r\n", at + 2)
    await reader.readexactly(int(head[at + 17 : end]))
    return status


async def measure(
    port: int, req: Request, clients: int, seconds: float
) -> tuple[int, float, list[float]]:
    """Closed loop: `clients` connections, each sending its next request when the last returns.
    Returns (requests, elapsed seconds, latencies in seconds); raises on any status >= 300."""
    latencies: list[float] = []
    failures: list[str] = []

    async def loop(i: int, deadline: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            n = 0
            while time.perf_counter() < deadline:
                data = req(i, n)
                n += 1
                t0 = time.perf_counter()
                status = await _exchange(reader, writer, data)
                latencies.append(time.perf_counter() - t0)
                if status >= 300:
                    failures.append(f"{status} for {data[:80]!r}")
        finally:
            writer.close()

    # warm-up, then the measured window
    warm = time.perf_counter() + min(1.0, seconds / 3)
    await asyncio.gather(*(loop(i, warm) for i in range(clients)))
    latencies.clear()
    start = time.perf_counter()
    await asyncio.gather(*(loop(i, start + seconds) for i in range(clients)))
    elapsed = time.perf_counter() - start
    if failures:
        raise BadResponse(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return len(latencies), elapsed, latencies


async def measure_open(
    port: int, req: Request, connections: int, rate: float, seconds: float
) -> tuple[int, float, list[float]]:
    """Open loop: requests arrive every 1/rate s whatever the server does, and are sent on the
    first free connection. Latency counts from the scheduled arrival, so time spent queued
    behind a slow response is counted (no coordinated omission). Returns (requests, elapsed,
    latencies) like `measure`."""
    latencies: list[float] = []
    failures: list[str] = []
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()

    async def worker(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (item := await queue.get()) is not None:
                n, due = item
                status = await _exchange(reader, writer, req(n % connections, n))
                latencies.append(time.perf_counter() - due)
                if status >= 300:
                    failures.append(f"{status} for request {n}")
        finally:
            writer.close()

    workers = [asyncio.create_task(worker(i)) for i in range(connections)]
    start = time.perf_counter()
    total = int(rate * seconds)
    for n in range(total):
        due = start + n / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        queue.put_nowait((n, due))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start
    if failures:
        raise BadResponse(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return total, elapsed, latencies


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclass
class RouteStats:
    rounds_rps: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    requests: int = 0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return statistics.median(self.rounds_rps)

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(np.array(self.latencies) * 1000, q))

    def cpu_ms(self, which: str) -> float:
        total = self.server_cpu_s if which == "server" else self.client_cpu_s
        return 1000 * total / max(self.requests, 1)


def run_rounds(
    srv: Server, routes: dict[str, Request], clients: int, seconds: float, rounds: int
) -> dict[str, RouteStats]:
    """Every route once per round, in the same order each round."""
    pids = [srv.proc.pid, *srv.worker_pids()] if srv.proc is not None else []
    out = {name: RouteStats() for name in routes}
    for _ in range(rounds):
        for name, req in routes.items():
            s0, c0 = sum(map(_cpu_s, pids)), _own_cpu_s()
            n, elapsed, lat = asyncio.run(measure(srv.port, req, clients, seconds))
            st = out[name]
            # CPU is counted over warm-up and window alike: scale to the requests of both
            share = elapsed / (elapsed + min(1.0, seconds / 3))
            st.server_cpu_s += (sum(map(_cpu_s, pids)) - s0) * share
            st.client_cpu_s += (_own_cpu_s() - c0) * share
            st.rounds_rps.append(n / elapsed)
            st.latencies.extend(lat)
            st.requests += n
    return out


def _make_host(c: Client, name: str) -> str:
    body = {
        "name": name,
        "pnodes": [{"memory_mib": 262144, "reserved_mib": 0, "cpus": 32}] * 2,
        "distances": [[10, 21], [21, 10]],
    }
    return c.create_host(body).id


def _make_domain(c: Client, name: str, host_id: str) -> str:
    body = {
        "name": name,
        "host_id": host_id,
        "memory": {"dynamic_min_mib": 2048, "dynamic_max_mib": 8192, "target_mib": 8192},
        "vnodes": [
            {"size_mib": 4096, "vcpus": [0, 1], "distances": [10, 21]},
            {"size_mib": 4096, "vcpus": [2, 3], "distances": [21, 10]},
        ],
    }
    return c.create_domain(body).id


def bench_backend(db_url: str, clients: int, seconds: float, rounds: int) -> dict[str, RouteStats]:
    """Same host: every client retargets its own domain, all on one host, so every write takes
    the same host lock (serialized by design: the worst case). Spread: one domain per host."""
    with Server(db_url, workers=1) as srv:
        token = srv.admin_token
        with Client(srv.url, token, timeout_s=30) as c:
            host = _make_host(c, "bench")
            ids = [_make_domain(c, f"vm{i}", host) for i in range(clients)]
            spread = [
                _make_domain(c, f"spread{i}", _make_host(c, f"bench{i}")) for i in range(clients)
            ]
        auth = f"Authorization: Bearer {token}\r\n"

        def put(domains: list[str]) -> Request:
            def build(i: int, n: int) -> bytes:
                body = f'{{"target_mib":{2048 + 128 * (n % 48)}}}'
                return (
                    f"PUT /v1/domains/{domains[i]}/target HTTP/1.1\r\nHost: bench\r\n{auth}"
                    "Content-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n{body}"
                ).encode()

            return build

        gets = [f"GET /v1/domains/{d} HTTP/1.1\r\nHost: bench\r\n{auth}\r\n".encode() for d in ids]
        healthz = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n"
        routes: dict[str, Request] = {
            "healthz": lambda i, n: healthz,
            "get-domain": lambda i, n: gets[i],
            "put-target": put(ids),
            "put-spread": put(spread),
        }
        out = run_rounds(srv, routes, clients, seconds, rounds)
        # The same writes offered at a fixed rate whatever the server does: the latency an
        # orchestrator sees when the service is busy but not saturated.
        pids = [srv.proc.pid] if srv.proc is not None else []
        s0, c0 = sum(map(_cpu_s, pids)), _own_cpu_s()
        n, elapsed, lat = asyncio.run(
            measure_open(srv.port, routes["put-target"], clients, OPEN_LOOP_RPS, seconds * rounds)
        )
        out[OPEN] = RouteStats(
            [n / elapsed], lat, n, sum(map(_cpu_s, pids)) - s0, _own_cpu_s() - c0
        )
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description="HTTP throughput and latency")
    ap.add_argument("--seconds", type=float, default=4.0, help="per route and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument(
        "--backend",
        choices=("sqlite", "postgres"),
        action="append",
        help="only these backends (repeatable; default both): the headlines are PostgreSQL's",
    )
    args = ap.parse_args()
    backends = args.backend or ["sqlite", "postgres"]
    results: dict[str, dict[str, RouteStats]] = {}
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory() as tmp:
            from service.db.alembic import upgrade

            sqlite_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            upgrade(sqlite_url)
            results["sqlite"] = bench_backend(sqlite_url, args.clients, args.seconds, args.rounds)
    if "postgres" in backends:
        with scratch_postgres() as pg_url:
            results["postgres"] = bench_backend(pg_url, args.clients, args.seconds, args.rounds)
    c = args.clients
    print(
        f"{'backend':<10}{'route':<16}{'clients':>8}{'rps':>9}{'p50_ms':>9}{'p99_ms':>9}"
        f"{'server_cpu_ms':>15}{'client_cpu_ms':>15}"
    )
    for backend, rows in results.items():
        for route, st in rows.items():
            print(
                f"{backend:<10}{route:<16}{c:>8}{st.rps:>9.1f}{st.percentile_ms(50):>9.2f}"
                f"{st.percentile_ms(99):>9.2f}{st.cpu_ms('server'):>15.3f}"
                f"{st.cpu_ms('client'):>15.3f}"
            )
    last = ""
    for backend in results:
        h = results[backend]["healthz"].rps
        for route in ("put-spread", "put-target"):
            st = results[backend][route]
            line = (
                f"http {route} {backend} c{c}: rps={st.rps:.1f} p99_ms={st.percentile_ms(99):.2f} "
                f"healthz_rps={h:.1f} ratio={st.rps / h:.3f}"
            )
            if (backend, route) == ("postgres", "put-target"):
                last = line
            else:
                print(line)
    if "postgres" not in results:
        return
    st = results["postgres"][OPEN]
    print(
        f"http put-target postgres {OPEN}: p99_ms={st.percentile_ms(99):.2f} "
        f"server_cpu_ms={st.cpu_ms('server'):.3f}"
    )
    print(last)


if __name__ == "__main__":
    main()
