"""What open long-polls and event streams cost everyone else: /healthz and a target change.

A real uvicorn with 2 workers on a scratch PostgreSQL. Throughout, a background writer changes
another domain's target `--writes-per-s` times a second (the events that wake waiters). The
sequential client measures `GET /healthz` and `PUT /v1/domains/{id}/target` p50:

- idle: no waiter;
- with `--waiters` open long-polls (`GET /v1/events?since=N&wait=60`), spread over 20 API keys
  (the default cap is 100 waiters per key and worker). 99 % wait for what nobody writes
  (migrations, an untouched domain, an idle key's actions); 1 % watch the background domain and
  poll again as soon as they are answered, like an orchestrator following its VM;
- right after all those clients went away (closed their connections);
- with `--waiters` open SSE streams (`GET /v1/events/stream`), the same mix, the 1 % on every
  domain event (the measured target changes too), like `/ui` pages;
- idle again.

The measuring and waiting clients are bare HTTP/1.1 on asyncio streams (cheap, like bench.http).
The last line is the headline: the worse of the long-poll and stream phases over idle (the mean
of the first and last phase, which have no waiter: the machine's speed drifts):

    waiters 1000: healthz_p50_ratio=<float> put_target_p50_ratio=<float>

    python -m bench.waiters [--waiters 1000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from bench.http import _cpu_s
from bench.load import scratch_postgres
from numa_balloon_testing.server import Server

T = TypeVar("T")
KEYS = 20
WAIT_S = 60
MATCHING = 0.01  # the share of waiters the writes wake

HOST = {
    "name": "waiters",
    "pnodes": [{"memory_mib": 262144, "reserved_mib": 0, "cpus": 32}] * 2,
    "distances": [[10, 21], [21, 10]],
}


def domain(name: str, host_id: str) -> dict[str, object]:
    return {
        "name": name,
        "host_id": host_id,
        "memory": {"dynamic_min_mib": 2048, "dynamic_max_mib": 8192, "target_mib": 8192},
        "vnodes": [
            {"size_mib": 4096, "vcpus": [0, 1], "distances": [10, 21]},
            {"size_mib": 4096, "vcpus": [2, 3], "distances": [21, 10]},
        ],
    }


@dataclass
class World:
    srv: Server
    token: str
    measured: str  # the domain whose target the measuring client changes
    background: str  # the domain the background writer changes
    untouched: str
    keys: list[str] = field(default_factory=list)


def setup(srv: Server) -> World:
    admin = {"Authorization": f"Bearer {srv.admin_token}"}
    with httpx.Client(base_url=srv.url, headers=admin, timeout=60) as c:
        host = c.post("/v1/hosts", json=HOST).json()["id"]
        ids = [c.post("/v1/domains", json=domain(n, host)).json()["id"] for n in "mbu"]
        keys = [
            c.post("/v1/api-keys", json={"name": f"watcher-{i}", "role": "viewer"}).json()["secret"]
            for i in range(KEYS)
        ]
    return World(srv, srv.admin_token, ids[0], ids[1], ids[2], keys)


def _request(method: str, path: str, token: str, body: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n" + body).encode()


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    end = lower.find(b"\r\n", at + 2)
    return int(head[9:12]), await reader.readexactly(int(head[at + 17 : end]))


def _put(w: World, domain_id: str, n: int) -> bytes:
    body = f'{{"target_mib":{2048 + 128 * (n % 48)}}}'
    return _request("PUT", f"/v1/domains/{domain_id}/target", w.token, body)


async def p50_ms(w: World, make: Callable[[int], bytes], count: int, budget_s: float) -> float:
    """Sequential requests on one keep-alive connection (at most `budget_s` of them)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", w.srv.port)
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    try:
        for n in range(count):
            t0 = time.perf_counter()
            writer.write(make(n))
            status, body = await _response(reader)
            times.append(time.perf_counter() - t0)
            if status >= 300:
                raise RuntimeError(f"{status}: {body[:300]!r}")
            if time.perf_counter() > deadline and len(times) >= 5:
                break
    finally:
        writer.close()
    return statistics.median(times) * 1e3


async def background_writes(w: World, per_s: float, stop: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", w.srv.port)
    n = 0
    try:
        while not stop.is_set():
            writer.write(_put(w, w.background, n))
            await _response(reader)
            n += 1
            await asyncio.sleep(1 / per_s)
    finally:
        writer.close()


def _filters(w: World, i: int, count: int) -> str:
    """What waiter `i` of `count` waits for: 1 % the background domain, the rest nothing."""
    if i < max(1, int(count * MATCHING)):
        return f"subject_id={w.background}"
    return (
        "kind=migration",
        f"subject_id={w.untouched}",
        "actor=key:nobody",
    )[i % 3]


async def _until(stop: asyncio.Event, work: Awaitable[T]) -> T | None:
    """`work`'s result, or None (and `work` cancelled) once `stop` is set."""
    got, stopped = asyncio.ensure_future(work), asyncio.ensure_future(stop.wait())
    await asyncio.wait({got, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for t in (got, stopped):
        if not t.done():
            t.cancel()
    return got.result() if got.done() and not got.cancelled() else None


async def long_poll(w: World, i: int, count: int, since: int, stop: asyncio.Event) -> None:
    """Waits, and polls again with the last seq it got, until stopped (then leaves abruptly)."""
    token = w.keys[i % len(w.keys)]
    reader, writer = await asyncio.open_connection("127.0.0.1", w.srv.port)
    try:
        while not stop.is_set():
            path = f"/v1/events?since={since}&wait={WAIT_S}&{_filters(w, i, count)}"
            writer.write(_request("GET", path, token))
            answer = await _until(stop, _response(reader))
            if answer is None:
                return
            status, body = answer
            if status != 200:
                raise RuntimeError(f"long-poll {i}: {status} {body[:200]!r}")
            items = json.loads(body)["items"]
            since = items[-1]["seq"] if items else since
    finally:
        writer.close()


async def stream(w: World, i: int, count: int, stop: asyncio.Event) -> None:
    """Reads its stream (and throws it away) until stopped, then leaves abruptly."""
    token = w.keys[i % len(w.keys)]
    wanted = "kind=domain" if i < max(1, int(count * MATCHING)) else _filters(w, i, count)
    reader, writer = await asyncio.open_connection("127.0.0.1", w.srv.port)
    try:
        writer.write(_request("GET", f"/v1/events/stream?{wanted}", token))
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"stream {i} refused: {head[:200]!r}")
        while await _until(stop, reader.read(65536)):
            pass
    finally:
        writer.close()


def _latest(w: World) -> int:
    admin = {"Authorization": f"Bearer {w.token}"}
    with httpx.Client(base_url=w.srv.url, headers=admin, timeout=60) as c:
        page, last = c.get("/v1/events", params={"limit": 500}).json(), 0
        while page["items"]:
            last = page["items"][-1]["seq"]
            page = c.get("/v1/events", params={"limit": 500, "since": last}).json()
        return int(last)


async def settle(w: World, busy: float = 0.3, at_most_s: float = 30) -> None:
    """Until the workers have let the crowd in: their CPU under `busy` cores over a second."""
    pids = w.srv.worker_pids()
    deadline = time.perf_counter() + at_most_s
    while time.perf_counter() < deadline:
        c0, t0 = sum(map(_cpu_s, pids)), time.perf_counter()
        await asyncio.sleep(1)
        if (sum(map(_cpu_s, pids)) - c0) / (time.perf_counter() - t0) < busy:
            return


@dataclass
class Row:
    name: str
    healthz_ms: float
    put_ms: float


async def measure(w: World, name: str, requests: int, budget_s: float) -> Row:
    healthz = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n"
    h = await p50_ms(w, lambda n: healthz, requests, budget_s)
    p = await p50_ms(w, lambda n: _put(w, w.measured, n), requests, budget_s)
    return Row(name, h, p)


async def run(w: World, count: int, requests: int, budget_s: float, per_s: float) -> list[Row]:
    stop_writes = asyncio.Event()
    writes = asyncio.create_task(background_writes(w, per_s, stop_writes))
    rows = [await measure(w, "idle", requests, budget_s)]

    async def open_all(
        start: Callable[[int], Coroutine[Any, Any, None]],
    ) -> list[asyncio.Task[None]]:
        tasks: list[asyncio.Task[None]] = []
        for i in range(count):
            tasks.append(asyncio.create_task(start(i)))
            if i % 50 == 49:
                await asyncio.sleep(0.2)  # a crowd arriving, not one burst of connects
        await settle(w)
        for t in tasks:
            if t.done():
                t.result()  # a refused waiter fails the benchmark
        return tasks

    since = await asyncio.to_thread(_latest, w)
    stop = asyncio.Event()
    polls = await open_all(lambda i: long_poll(w, i, count, since, stop))
    rows.append(await measure(w, f"{count} long-polls", requests, budget_s))
    stop.set()
    await asyncio.gather(*polls)
    rows.append(await measure(w, f"{count} long-poll clients gone", requests, budget_s))

    stop = asyncio.Event()
    streams = await open_all(lambda i: stream(w, i, count, stop))
    rows.append(await measure(w, f"{count} streams", requests, budget_s))
    stop.set()
    await asyncio.gather(*streams)
    rows.append(await measure(w, "idle again", requests, budget_s))
    stop_writes.set()
    await writes
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--waiters", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=200, help="per route and phase")
    ap.add_argument("--budget-s", type=float, default=60, help="at most, per route and phase")
    ap.add_argument("--writes-per-s", type=float, default=5)
    ap.add_argument("--quick", action="store_true", help="a short smoke run (50 waiters)")
    args = ap.parse_args()
    count, requests = (50, 30) if args.quick else (args.waiters, args.requests)
    with scratch_postgres() as url, Server(url, workers=2) as srv:
        world = setup(srv)
        rows = asyncio.run(run(world, count, requests, args.budget_s, args.writes_per_s))
    # The machine's speed drifts over minutes: idle is measured first and last, and averaged.
    idle = [r for r in rows if r.name.startswith("idle")]
    idle_h = statistics.fmean(r.healthz_ms for r in idle)
    idle_p = statistics.fmean(r.put_ms for r in idle)
    print(f"waiters bench: PostgreSQL, 2 workers, {args.writes_per_s:g} background writes/s")
    print(f"{'phase':<32}{'healthz p50 ms':>16}{'put target p50 ms':>19}")
    for r in rows:
        print(f"{r.name:<32}{r.healthz_ms:>16.2f}{r.put_ms:>19.2f}")
    loaded = [r for r in rows if r.name.endswith(("long-polls", "streams"))]
    h = max(r.healthz_ms for r in loaded) / idle_h
    p = max(r.put_ms for r in loaded) / idle_p
    print(f"waiters {count}: healthz_p50_ratio={h:.2f} put_target_p50_ratio={p:.2f}")


if __name__ == "__main__":
    main()
