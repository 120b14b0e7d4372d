"""Cluster benchmark: 10,000 hosts and 200,000 domains on one PostgreSQL, measured over HTTP.

A fresh database is migrated with Alembic and bulk-loaded with COPY: hosts of the four real
shapes (1 node; 2 sockets; AMD EPYC NPS4 on 2 sockets, 8 nodes; 4-socket Xeon SNC4, 16 nodes;
512 GiB each), 20 domains per host of 2-16 vnodes whose backing fits every pnode, the
materialized accounting (allocated MiB and vCPU load per pnode) and one agent token per host.
Then 2 uvicorn workers serve it and every row of issue 18's table is measured over HTTP.

Latencies of the cluster-wide reads are sequential requests from one client (the service's
own time, no queueing); the agent reports are offered open loop at the agents' natural rate
(every host every 10 s) and the batch report's server CPU is read from /proc. Every guest is at
its target and its host's agent has reported so before: the steady report is the natural one.
A report that changes every pool (a host's first, or all its guests moving) is timed apart.

The agents' channel with leases (issue 25): every host takes a lease first (each host's first
lease writes its judgement), then a renewal's server CPU (closed loop, 4 clients), renewals
offered open loop at the agents' natural rate (every host every 10 s), and the cluster's
natural load: those renewals plus 2 % of the hosts per interval sending a report that changes
their pools. Leases last an hour in the benchmark (NUMA_BALLOON_AGENT_LEASE_S), so that hosts
not renewed during the other measurements are not judged lost in the middle of them. On a
service without the lease route the agents line says so and the rest runs as before.

    python -m bench.cluster [--quick] [--hosts N] [--seconds S] [--only agents]

The last three lines are the headlines:

    rank 8x10000: ms=<float>
    cluster 10000 hosts: placement_p50_ms=... template_ms=... list_p99_ms=... summary_ms=...
        report_cpu_ms=... reports_rps=... reports_p99_ms=...
    agents 10000 hosts: lease_cpu_ms=... leases_rps=... leases_p99_ms=... natural_rps=...
        natural_p99_ms=... report_cpu_ms=...
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import psycopg

from bench.http import _cpu_s, _exchange, measure
from bench.load import scratch_postgres
from bench.timing import median_ms
from numa_balloon_testing.server import Server

DOMAINS_PER_HOST = 20
VCPUS_PER_VNODE = 2
REPORT_INTERVAL_S = 10.0
GUEST_VNODES, GUEST_VNODE_MIB = 8, 8192


def slit(n: int, per_socket: int, near: int, far: int) -> list[list[int]]:
    return [
        [10 if i == j else near if i // per_socket == j // per_socket else far for j in range(n)]
        for i in range(n)
    ]


@dataclass(frozen=True)
class Shape:
    """A real machine: per pnode memory, CPUs; node 0 holds back memory for Xen and dom0."""

    name: str
    pnodes: int
    memory_mib: int
    cpus: int
    distances: list[list[int]]
    reserved0_mib: int = 8192


SHAPES = (
    Shape("1node", 1, 524288, 64, [[10]]),
    Shape("2socket", 2, 262144, 32, slit(2, 1, 21, 21)),
    Shape("epyc-nps4-2s", 8, 65536, 16, slit(8, 4, 12, 32)),
    Shape("xeon-4s-snc4", 16, 32768, 8, slit(16, 4, 12, 21)),
)


@dataclass
class Cluster:
    host_ids: list[str] = field(default_factory=list)
    agent_tokens: list[str] = field(default_factory=list)
    domains_by_host: list[list[tuple[str, list[int]]]] = field(default_factory=list)
    domain_ids: list[str] = field(default_factory=list)


def _ts(t: datetime) -> str:
    return t.isoformat()


def _copy(cur: psycopg.Cursor[tuple[object, ...]], table: str, cols: str, lines: list[str]) -> None:
    with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as cp:
        for lo in range(0, len(lines), 50_000):
            cp.write("".join(lines[lo : lo + 50_000]))


def _domain(
    rng: np.random.Generator, free: list[int], shape: Shape
) -> tuple[list[int], list[int]] | None:
    """Sizes and homes of a new domain, homed from the pnode with the most room, or None."""
    k = int(rng.integers(2, 17))
    sizes = [2048 if r < 0.25 else 1024 for r in rng.random(k).tolist()]
    start = max(range(shape.pnodes), key=lambda p: free[p])
    homes = [(start + v) % shape.pnodes for v in range(k)]
    need = [0] * shape.pnodes
    for s, p in zip(sizes, homes, strict=True):
        need[p] += s
    if any(n > f for n, f in zip(need, free, strict=True)):
        return None
    for p, n in enumerate(need):
        free[p] -= n
    return sizes, homes


def generate(n_hosts: int, seed: int = 18) -> tuple[Cluster, dict[str, list[str]]]:
    """Every row of the cluster as COPY text, and what the benchmark needs to address it."""
    rng = np.random.default_rng(seed)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    cl = Cluster()
    rows: dict[str, list[str]] = {t: [] for t in ("hosts", "pnodes", "domains", "vnodes")}
    rows["backing"], rows["tokens"] = [], []
    vd_json = {k: json.dumps(slit(k, max(1, k // 2), 12, 21)) for k in range(1, 17)}
    vcpus_json = {
        v: json.dumps(list(range(v * VCPUS_PER_VNODE, (v + 1) * VCPUS_PER_VNODE)))
        for v in range(16)
    }
    for h in range(n_hosts):
        shape = SHAPES[h % len(SHAPES)]
        hid = str(uuid.uuid4())
        cl.host_ids.append(hid)
        stamp = _ts(now + timedelta(microseconds=h))
        rows["hosts"].append(
            f"{hid}\tbench-{shape.name}-{h:05d}\tactive\t{json.dumps(shape.distances)}\t"
            f"f\t{stamp}\t{stamp}\t1\n"
        )
        token = f"nbh_bench_{h:05d}_{uuid.uuid4().hex}"
        cl.agent_tokens.append(token)
        digest = hashlib.sha256(token.encode()).hexdigest()
        rows["tokens"].append(f"{uuid.uuid4()}\tagent\t{hid}\t{digest}\t{stamp}\n")
        reserved = [shape.reserved0_mib] + [0] * (shape.pnodes - 1)
        free = [shape.memory_mib - r for r in reserved]
        alloc, load = [0] * shape.pnodes, [0] * shape.pnodes
        mine: list[tuple[str, list[int]]] = []
        while len(mine) < DOMAINS_PER_HOST:
            made = _domain(rng, free, shape)
            if made is None:
                continue
            sizes, homes = made
            did = str(uuid.uuid4())
            mine.append((did, sizes))
            k, total = len(sizes), sum(sizes)
            dstamp = _ts(now + timedelta(milliseconds=len(cl.domain_ids)))
            rows["domains"].append(
                f"{did}\tvm-{h:05d}-{len(mine):02d}\t{hid}\trunning\tproportional\t128\t"
                f"{total}\t{total // 2}\t{total}\t{total}\t{vd_json[k]}\tf\tf\t"
                f"{dstamp}\t{dstamp}\t{dstamp}\t1\n"
            )
            for v, (s, p) in enumerate(zip(sizes, homes, strict=True)):
                rows["vnodes"].append(  # at its target, as its host's agent last reported
                    f"{did}\t{v}\t{s}\t{vcpus_json[v]}\t{VCPUS_PER_VNODE}\t{s}\t{s}\t{p}\n"
                )
                rows["backing"].append(f"{did}\t{v}\t{hid}\t{p}\t{s}\n")
                alloc[p] += s
                load[p] += VCPUS_PER_VNODE
            cl.domain_ids.append(did)
        cl.domains_by_host.append(mine)
        for p in range(shape.pnodes):
            rows["pnodes"].append(
                f"{hid}\t{p}\t{shape.memory_mib}\t{reserved[p]}\t{shape.cpus}\t{alloc[p]}\t0\t"
                f"{load[p]}\n"
            )
    return cl, rows


COLUMNS = {
    "hosts": "id, name, state, distances, drift_flagged, created_at, updated_at, version",
    "pnodes": "host_id, index, memory_mib, reserved_mib, cpus, allocated_mib, claimed_mib, "
    "load_vcpus",
    "domains": "id, name, host_id, state, policy, block_mib, static_max_mib, dynamic_min_mib, "
    "dynamic_max_mib, target_mib, distances, from_template, uncooperative, target_set_at, "
    "created_at, updated_at, version",
    "vnodes": "domain_id, index, size_mib, vcpus, vcpu_count, target_mib, actual_mib, home_pnode",
    "backing": "domain_id, vnode, host_id, pnode, mib",
    "tokens": "id, kind, subject_id, token_hash, created_at",
}


def bulk_load(db_url: str, rows: dict[str, list[str]]) -> float:
    """COPY every table in one transaction, then ANALYZE; returns seconds taken."""
    t0 = time.perf_counter()
    dsn = db_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            for table in ("hosts", "pnodes", "domains", "vnodes", "backing", "tokens"):
                _copy(cur, table, COLUMNS[table], rows[table])
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE")
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- measuring


@dataclass
class Timings:
    samples_s: list[float] = field(default_factory=list)
    server_cpu_s: float = 0.0

    def cpu_ms(self) -> float:
        """Server CPU (both workers) per request: robust to other load on the machine."""
        return 1000 * self.server_cpu_s / len(self.samples_s) if self.samples_s else float("nan")

    def pct_ms(self, q: float) -> float:
        if not self.samples_s:
            return float("nan")
        return float(np.percentile(np.array(self.samples_s) * 1000, q))


def timed(
    c: httpx.Client,
    cpu: Callable[[], float],
    method: str,
    url: Callable[[int], str],
    n: int,
    body: Callable[[int], object] | None = None,
) -> Timings:
    """n sequential requests; a 404/405 (route not built on this branch) gives no samples."""
    out = Timings()
    for i in range(n):
        c0, t0 = cpu(), time.perf_counter()
        r = c.request(method, url(i), json=None if body is None else body(i))
        dt = time.perf_counter() - t0
        if r.status_code in (404, 405) and i == 0:
            return out
        if r.status_code >= 300:
            raise RuntimeError(f"{method} {url(i)}: {r.status_code} {r.text[:300]}")
        out.samples_s.append(dt)
        out.server_cpu_s += cpu() - c0
    return out


def guest_body(name: str) -> dict[str, object]:
    vd = slit(GUEST_VNODES, 4, 12, 21)
    mib = GUEST_VNODES * GUEST_VNODE_MIB
    return {
        "name": name,
        "memory": {"dynamic_min_mib": mib // 2, "dynamic_max_mib": mib, "target_mib": mib},
        "vnodes": [
            {"size_mib": GUEST_VNODE_MIB, "vcpus": [4 * v + i for i in range(4)], "distances": d}
            for v, d in enumerate(vd)
        ],
    }


def engine_rank_ms(db_url: str, repeats: int) -> tuple[float, float]:
    """rank_cluster alone on the loaded cluster's matrices (read once, as a request would):
    with nothing kept (the engine's own cost), and the same flavour again on the same hosts
    (shortlists and in-depth searches kept, as in a worker placing a flavour again)."""
    from service.db.cluster import load_cluster
    from service.db.session import make_engine, make_sessionmaker
    from service.engine.placement import forget_kept_searches, rank_cluster

    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine)() as s:
            view = load_cluster(s)
    finally:
        engine.dispose()
    body = guest_body("x")
    kw = {
        "demand_mib": np.full(GUEST_VNODES, GUEST_VNODE_MIB, np.int64),
        "vcpu_count": np.full(GUEST_VNODES, 4, np.int64),
        "vdist": np.array([v["distances"] for v in body["vnodes"]], np.int64),  # type: ignore[attr-defined,index]
        "cluster": view.arrays,
        "limit": 10,
    }

    def cold() -> None:
        forget_kept_searches()
        rank_cluster(**kw)  # type: ignore[arg-type]

    return median_ms(cold, repeats), median_ms(lambda: rank_cluster(**kw), repeats)  # type: ignore[arg-type]


def report_request(cl: Cluster, h: int, less_mib: int = 0) -> bytes:
    """The batch report of host h: every domain's per-vnode actual size (as targeted: the steady
    report; `less_mib` below it on every vnode: a report that changes every pool)."""
    domains = [
        {
            "domain_id": d,
            "vnodes": [{"index": v, "actual_mib": s - less_mib} for v, s in enumerate(sizes)],
        }
        for d, sizes in cl.domains_by_host[h]
    ]
    body = json.dumps({"domains": domains}, separators=(",", ":"))
    return (
        f"POST /v1/agent/hosts/{cl.host_ids[h]}/report HTTP/1.1\r\nHost: bench\r\n"
        f"Authorization: Bearer {cl.agent_tokens[h]}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def measure_reports(srv: Server, cl: Cluster, seconds: float, rate: float) -> dict[str, float]:
    """Server CPU ms per steady report and per report that changes every pool (closed loop,
    4 clients), then achieved reports/s and p99 ms at `rate` offered (open loop)."""
    n_hosts = len(cl.host_ids)
    steady = [report_request(cl, h) for h in range(n_hosts)]
    changed = [report_request(cl, h, less_mib=128) for h in range(n_hosts)]
    pids = [srv.proc.pid, *srv.worker_pids()] if srv.proc is not None else []

    def cpu_ms(reqs: list[bytes]) -> float:
        c0 = sum(map(_cpu_s, pids))
        n, _, _ = asyncio.run(measure(srv.port, lambda i, k: reqs[(i * 7919 + k) % n_hosts], 4, 3))
        return (sum(map(_cpu_s, pids)) - c0) * 1000 / max(n, 1)

    steady_ms = cpu_ms(steady)
    done, elapsed, lat = asyncio.run(open_loop(srv.port, steady, 64, rate, seconds))
    total = int(rate * seconds)
    # Reports still unanswered when the grace period ended count as infinitely late.
    lat_ms = np.concatenate([np.array(lat) * 1000, np.full(total - done, np.inf)])
    return {
        "report_cpu_ms": steady_ms,
        "reports_rps": done / elapsed,
        "reports_p99_ms": float(np.percentile(lat_ms, 99, method="higher")),
        "report_changed_cpu_ms": cpu_ms(changed),  # last: it moves the hosts off the steady state
    }


def lease_request(cl: Cluster, h: int, seq: int) -> bytes:
    body = f'{{"seq":{seq}}}'
    return (
        f"PUT /v1/agent/hosts/{cl.host_ids[h]}/lease HTTP/1.1\r\nHost: bench\r\n"
        f"Authorization: Bearer {cl.agent_tokens[h]}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def _late(lat: list[float], done: int, total: int) -> tuple[float, float]:
    """(p99 ms, answered/s basis): unanswered requests count as infinitely late."""
    lat_ms = np.concatenate([np.array(lat) * 1000, np.full(total - done, np.inf)])
    return float(np.percentile(lat_ms, 99, method="higher")), float(done)


def has_leases(srv: Server, cl: Cluster) -> bool:
    """Whether the service has the lease route (a branch before issue 25 answers 404/405)."""
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        r = c.put(
            f"/v1/agent/hosts/{cl.host_ids[0]}/lease",
            headers={"Authorization": f"Bearer {cl.agent_tokens[0]}"},
            json={"seq": 0},
        )
    if r.status_code in (404, 405):
        return False
    r.raise_for_status()
    return True


def measure_agents(srv: Server, cl: Cluster, seconds: float, rate: float) -> dict[str, float]:
    """Leases: every host takes one (its first renewal writes its judgement), then server CPU
    per renewal (closed loop, 4 clients), renewals at `rate` offered (open loop), and the
    natural load: `rate` renewals/s plus 2 % of the hosts per 10 s sending a changed report."""
    n_hosts = len(cl.host_ids)
    pids = [srv.proc.pid, *srv.worker_pids()] if srv.proc is not None else []
    seq = [1] * n_hosts

    def renewal(h: int) -> bytes:
        seq[h] += 1
        return lease_request(cl, h, seq[h])

    # Every host's first lease, as the agents would take them on start.
    asyncio.run(open_loop_fn(srv.port, lambda n: renewal(n), 32, 1e9, n_hosts, drain_s=600))
    c0 = sum(map(_cpu_s, pids))
    n, _, _ = asyncio.run(
        measure(srv.port, lambda i, k: renewal((i * 7919 + k * 13) % n_hosts), 4, 3)
    )
    lease_cpu_ms = (sum(map(_cpu_s, pids)) - c0) * 1000 / max(n, 1)

    total = int(rate * seconds)
    done, elapsed, lat = asyncio.run(
        open_loop_fn(srv.port, lambda n: renewal((n * 7919) % n_hosts), 64, rate, total, seconds)
    )
    leases_p99, _ = _late(lat, done, total)

    # 2 % of the hosts per interval send a report that changes every pool (256 MiB below its
    # target: unlike any report before), between the renewals.
    reports_per_s = 0.02 * n_hosts / REPORT_INTERVAL_S
    every = max(1, round(rate / reports_per_s))
    changed_hosts = iter(range(n_hosts - 1, -1, -1))

    def natural(n: int) -> bytes:
        if n % every == every - 1:
            return report_request(cl, next(changed_hosts), less_mib=256)
        return renewal((n * 7919 + 1) % n_hosts)

    offered = rate + rate / every
    total_n = int(offered * seconds)
    done_n, elapsed_n, lat_n = asyncio.run(
        open_loop_fn(srv.port, natural, 64, offered, total_n, seconds)
    )
    natural_p99, _ = _late(lat_n, done_n, total_n)
    return {
        "lease_cpu_ms": lease_cpu_ms,
        "leases_rps": done / elapsed,
        "leases_p99_ms": leases_p99,
        "natural_rps": done_n / elapsed_n,
        "natural_p99_ms": natural_p99,
    }


async def open_loop_fn(
    port: int,
    req: Callable[[int], bytes],
    connections: int,
    rate: float,
    total: int,
    drain_s: float,
) -> tuple[int, float, list[float]]:
    """`total` requests arriving every 1/rate s whatever the server does (latency from the
    scheduled arrival); the server gets `drain_s` more to answer, then the rest are dropped.
    Returns (answered, elapsed s, latencies s)."""
    latencies: list[float] = []
    queue: asyncio.Queue[tuple[int, float]] = asyncio.Queue()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                n, due = await queue.get()
                status = await _exchange(reader, writer, req(n))
                if status >= 300:
                    raise RuntimeError(f"request {n}: status {status}")
                latencies.append(time.perf_counter() - due)
        finally:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    start = time.perf_counter()
    for n in range(total):
        due = start + n / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        queue.put_nowait((n, due))
    deadline = time.perf_counter() + drain_s
    while len(latencies) < total and time.perf_counter() < deadline:
        if any(w.done() for w in workers):
            break
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - start
    for w in workers:
        w.cancel()
    errors = await asyncio.gather(*workers, return_exceptions=True)
    failed = [e for e in errors if isinstance(e, RuntimeError)]
    if failed:
        raise failed[0]
    return len(latencies), elapsed, latencies


async def open_loop(
    port: int, reqs: list[bytes], connections: int, rate: float, seconds: float
) -> tuple[int, float, list[float]]:
    """`open_loop_fn` over `reqs` in turn for `seconds`, with `seconds` more to drain."""
    total = int(rate * seconds)
    return await open_loop_fn(
        port, lambda n: reqs[n % len(reqs)], connections, rate, total, seconds
    )


def pages(
    c: httpx.Client, cpu: Callable[[], float], path: str, n: int, params: dict[str, str]
) -> Timings:
    """Walk a list n pages deep through its cursors, timing each page."""
    out = Timings()
    cursor: str | None = None
    for _ in range(n):
        q = dict(params, **({"cursor": cursor} if cursor else {}))
        c0, t0 = cpu(), time.perf_counter()
        r = c.get(path, params=q)
        out.samples_s.append(time.perf_counter() - t0)
        out.server_cpu_s += cpu() - c0
        r.raise_for_status()
        cursor = r.json().get("next_cursor")
    return out


@dataclass
class Results:
    rows: dict[str, Timings] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)


def measure_http(
    srv: Server, cl: Cluster, n: int, report_s: float, rate: float, only: str | None = None
) -> Results:
    res = Results()
    if only == "agents":
        res.extra.update(measure_reports(srv, cl, report_s, rate))
        if has_leases(srv, cl):
            res.extra.update(measure_agents(srv, cl, report_s, rate))
        return res
    rng = np.random.default_rng(5)
    auth = {"Authorization": f"Bearer {srv.admin_token}"}
    pids = [srv.proc.pid, *srv.worker_pids()] if srv.proc is not None else []

    def cpu() -> float:
        return sum(map(_cpu_s, pids))

    with httpx.Client(base_url=srv.url, headers=auth, timeout=120) as c:
        for _ in range(4):  # both workers warm (imports, statement caches)
            c.get("/v1/cluster").raise_for_status()
            c.get(f"/v1/domains/{cl.domain_ids[0]}/placements", params={"limit": 10})
        some = [cl.domain_ids[int(i)] for i in rng.integers(len(cl.domain_ids), size=n)]
        rows = res.rows
        rows["placements?limit=10"] = timed(
            c, cpu, "GET", lambda i: f"/v1/domains/{some[i]}/placements?limit=10", n
        )
        rows["placement preview"] = timed(
            c, cpu, "POST", lambda i: "/v1/placements?limit=10", n, lambda i: guest_body("p")
        )
        rows["unpinned create"] = timed(
            c,
            cpu,
            "POST",
            lambda i: "/v1/domains",
            n,
            lambda i: guest_body(f"new-{uuid.uuid4().hex[:12]}"),
        )
        rows["worst-case template"] = timed(
            c, cpu, "POST", lambda i: "/v1/cluster/worst-case-template", max(3, n // 4)
        )
        rows["cluster summary"] = timed(c, cpu, "GET", lambda i: "/v1/cluster", n)
        lists = [
            pages(c, cpu, "/v1/hosts", 4 * n, {"limit": "50"}),
            pages(c, cpu, "/v1/domains", 4 * n, {"limit": "50"}),
        ]
        for i in rng.integers(len(cl.host_ids), size=2 * n):
            host = cl.host_ids[int(i)]
            lists.append(pages(c, cpu, "/v1/domains", 1, {"limit": "50", "host_id": host}))
        rows["list pages (50 items)"] = Timings(
            [x for t in lists for x in t.samples_s], sum(t.server_cpu_s for t in lists)
        )
    res.extra.update(measure_reports(srv, cl, report_s, rate))
    if has_leases(srv, cl):  # last: it takes a lease for every host
        res.extra.update(measure_agents(srv, cl, report_s, rate))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few hundred hosts: a smoke run")
    ap.add_argument("--hosts", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None, help="of sustained agent reports")
    ap.add_argument("--only", choices=("agents",), help="only the agents' channel")
    args = ap.parse_args()
    n_hosts = args.hosts or (300 if args.quick else 10_000)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    n = 5 if args.quick else 25
    rate = n_hosts / REPORT_INTERVAL_S
    t0 = time.perf_counter()
    cl, rows = generate(n_hosts)
    gen_s = time.perf_counter() - t0
    with scratch_postgres() as url:
        load_s = bulk_load(url, rows)
        del rows
        rank_ms, rank_kept_ms = engine_rank_ms(url, 3 if args.quick else 9)
        env = {"NUMA_BALLOON_AGENT_LEASE_S": "3600"}
        with Server(url, workers=2, env=env) as srv:
            res = measure_http(srv, cl, n, seconds, rate, args.only)
    print(
        f"{n_hosts:,} hosts, {len(cl.domain_ids):,} domains: generated in {gen_s:.1f} s, "
        f"COPY + ANALYZE in {load_s:.1f} s; 2 uvicorn workers on PostgreSQL"
    )
    print(f"{'operation':<26}{'n':>6}{'p50_ms':>10}{'p99_ms':>10}{'server_cpu_ms':>15}")
    for name, t in res.rows.items():
        print(
            f"{name:<26}{len(t.samples_s):>6}{t.pct_ms(50):>10.1f}{t.pct_ms(99):>10.1f}"
            f"{t.cpu_ms():>15.1f}"
        )
    for name, value in res.extra.items():
        print(f"{name:<26}{'':>6}{value:>10.2f}")
    e = res.extra
    agents = (
        f"agents {n_hosts} hosts: lease_cpu_ms={e['lease_cpu_ms']:.2f} "
        f"leases_rps={e['leases_rps']:.1f} leases_p99_ms={e['leases_p99_ms']:.1f} "
        f"natural_rps={e['natural_rps']:.1f} natural_p99_ms={e['natural_p99_ms']:.1f} "
        f"report_cpu_ms={e['report_cpu_ms']:.2f}"
        if "lease_cpu_ms" in e
        else f"agents {n_hosts} hosts: no lease route on this service (every host reports "
        f"every {REPORT_INTERVAL_S:g} s: report_cpu_ms={e['report_cpu_ms']:.2f} "
        f"reports_rps={e['reports_rps']:.1f} reports_p99_ms={e['reports_p99_ms']:.1f})"
    )
    if args.only == "agents":
        print(agents)
        return
    placement = [
        res.rows[k].pct_ms(50)
        for k in ("unpinned create", "placement preview", "placements?limit=10")
        if res.rows[k].samples_s
    ]
    print(f"rank 8x{n_hosts}, the same flavour again (searches kept): ms={rank_kept_ms:.1f}")
    print(f"rank 8x{n_hosts}: ms={rank_ms:.1f}")
    print(
        f"cluster {n_hosts} hosts: placement_p50_ms={max(placement):.1f} "
        f"template_ms={res.rows['worst-case template'].pct_ms(50):.1f} "
        f"list_p99_ms={res.rows['list pages (50 items)'].pct_ms(99):.1f} "
        f"summary_ms={res.rows['cluster summary'].pct_ms(50):.1f} "
        f"report_cpu_ms={e['report_cpu_ms']:.2f} reports_rps={e['reports_rps']:.1f} "
        f"reports_p99_ms={e['reports_p99_ms']:.1f}"
    )
    print(agents)


if __name__ == "__main__":
    main()
