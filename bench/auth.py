"""What authentication costs, and what an unauthenticated attacker can make the server do.

A real uvicorn (one worker) on PostgreSQL. Rows:

- `GET /v1/cluster` with the admin token (constant-time compare, no database), an API key (one
  indexed query by digest in the thread pool), and no token (401 at once);
- a 1 MiB hostile body (`"` then `\\"` repeated, an unterminated JSON string) POSTed without a
  token: answered 401 before one byte of it is parsed; and `/healthz` latency measured alone and
  while the hostile requests run, to show they do not hold the event loop.

    python -m bench.auth [--seconds 3] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
import numpy as np

from bench.load import scratch_postgres
from numa_balloon_testing.server import BENCH_ADMIN_TOKEN, Server

HOSTILE = b'"' + b'\\"' * ((1 << 20) // 2 - 1)


def request(method: str, path: str, token: str | None = None, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> int:
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    end = lower.find(b"\r\n", at + 2)
    await reader.readexactly(int(head[at + 17 : end]))
    return int(head[9:12])


async def closed_loop(
    port: int, req: bytes, clients: int, seconds: float
) -> tuple[float, list[float], set[int]]:
    """rps, latencies (s) and the statuses seen, for `clients` keep-alive connections."""
    latencies: list[float] = []
    statuses: set[int] = set()

    async def one(deadline: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                statuses.add(await exchange(reader, writer, req))
                latencies.append(time.perf_counter() - start)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(one(start + seconds) for _ in range(clients)))
    return len(latencies) / (time.perf_counter() - start), latencies, statuses


def ms(values: list[float], q: float) -> float:
    return float(np.quantile(np.array(values), q) * 1000) if values else float("nan")


async def hostile_with_healthz(port: int, seconds: float) -> tuple[list[float], list[float]]:
    """Hostile bodies on 2 connections while one connection probes /healthz."""
    hostile: list[float] = []
    probes: list[float] = []
    deadline = time.perf_counter() + seconds

    async def attacker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        req = request("POST", "/v1/hosts", body=HOSTILE)
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            assert await exchange(reader, writer, req) == 401
            hostile.append(time.perf_counter() - start)
        writer.close()

    async def prober() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            assert await exchange(reader, writer, request("GET", "/healthz")) == 200
            probes.append(time.perf_counter() - start)
            await asyncio.sleep(0.005)
        writer.close()

    await asyncio.gather(attacker(), attacker(), prober())
    return hostile, probes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    with scratch_postgres() as url, Server(url) as srv:
        key = httpx.post(
            f"{srv.url}/v1/api-keys",
            headers={"Authorization": f"Bearer {BENCH_ADMIN_TOKEN}"},
            json={"name": "bench", "role": "viewer"},
        ).json()["secret"]
        print(f"auth bench: PostgreSQL, 1 worker, {args.clients} clients, {args.seconds:g} s")
        print(f"{'row':<44}{'rps':>8}{'p50 ms':>9}{'p99 ms':>9}  statuses")
        rows = [
            ("GET /v1/cluster, admin token", request("GET", "/v1/cluster", BENCH_ADMIN_TOKEN)),
            ("GET /v1/cluster, viewer API key", request("GET", "/v1/cluster", key)),
            ("GET /v1/cluster, no token (401)", request("GET", "/v1/cluster")),
        ]
        for name, req in rows:
            rps, lat, seen = asyncio.run(closed_loop(srv.port, req, args.clients, args.seconds))
            print(f"{name:<44}{rps:>8.0f}{ms(lat, 0.5):>9.1f}{ms(lat, 0.99):>9.1f}  {seen}")
        _, idle, _ = asyncio.run(closed_loop(srv.port, request("GET", "/healthz"), 1, args.seconds))
        hostile, probes = asyncio.run(hostile_with_healthz(srv.port, args.seconds))
        print(
            f"{'POST 1 MiB hostile body, no token (401)':<44}"
            f"{len(hostile) / args.seconds:>8.0f}{ms(hostile, 0.5):>9.1f}"
            f"{ms(hostile, 0.99):>9.1f}  max {max(hostile) * 1000:.1f} ms"
        )
        print(
            f"{'/healthz alone':<44}{'':>8}{ms(idle, 0.5):>9.2f}{ms(idle, 0.99):>9.2f}\n"
            f"{'/healthz during the hostile bodies':<44}{'':>8}{ms(probes, 0.5):>9.2f}"
            f"{ms(probes, 0.99):>9.2f}  (2 attacking connections)"
        )


if __name__ == "__main__":
    main()
