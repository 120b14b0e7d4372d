"""Failover planner benchmark at the engine level: the cluster benchmark's hosts and domains
built as arrays (no database), then the failover plan timed at the sizes of issue 26.

The cluster is bench/cluster.py's: hosts of four real shapes in turn (1 node; 2 sockets; AMD
EPYC NPS4 on 2 sockets, 8 nodes; 4-socket Xeon SNC4, 16 nodes; 512 GiB each, 8 GiB of node 0
held back), 20 domains per host of 2-16 vnodes of 1 or 2 GiB homed from the pnode with the most
room, every domain protected, at its target, squeezable down to half (dynamic_min = target / 2).

    python -m bench.failover [--hosts N]

The last line is the headline:

    failover engine 10000 hosts: r1_exact_ms=<float> r1_1000_ms=<float> r2_100_ms=<float>
        admission_ms=<float> tolerated=<bool>
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from numpy.typing import NDArray

from bench.cluster import DOMAINS_PER_HOST, SHAPES, VCPUS_PER_VNODE, Shape, slit
from bench.timing import median_ms
from service.engine.failover import (
    FailoverHosts,
    GuestShape,
    ProtectedDomains,
    plan_failover,
    protected_domains,
)

I64 = NDArray[np.int64]


def _domain(
    rng: np.random.Generator, free: list[int], shape: Shape
) -> tuple[list[int], list[int]] | None:
    """bench.cluster's domain generator: sizes and homes, or None when it does not fit."""
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


def generate(n_hosts: int, seed: int = 18) -> tuple[FailoverHosts, ProtectedDomains]:
    rng = np.random.default_rng(seed)
    width = max(s.pnodes for s in SHAPES)
    free_mib = np.zeros((n_hosts, width), dtype=np.int64)
    squeezable = np.zeros((n_hosts, width), dtype=np.int64)
    vdist = {k: np.array(slit(k, max(1, k // 2), 12, 21), dtype=np.int64) for k in range(1, 17)}
    guests: list[GuestShape] = []
    hosts: list[int] = []
    kept: dict[bytes, GuestShape] = {}
    for h in range(n_hosts):
        shape = SHAPES[h % len(SHAPES)]
        free = [
            shape.memory_mib - (shape.reserved0_mib if p == 0 else 0) for p in range(shape.pnodes)
        ]
        made = 0
        while made < DOMAINS_PER_HOST:
            got = _domain(rng, free, shape)
            if got is None:
                continue
            sizes, homes = got
            made += 1
            for s, p in zip(sizes, homes, strict=True):
                squeezable[h, p] += s // 2  # squeezed to dynamic_min = target / 2, pool by pool
            key = np.array(sizes, dtype=np.int64).tobytes()
            if key not in kept:
                k = len(sizes)
                kept[key] = GuestShape(
                    restart_mib=np.array(sizes, dtype=np.int64),
                    vcpu_count=np.full(k, VCPUS_PER_VNODE, dtype=np.int64),
                    vdist=vdist[k],
                )
            guests.append(kept[key])
            hosts.append(h)
        free_mib[h, : shape.pnodes] = free
    shapes = tuple(np.array(s.distances, dtype=np.int64) for s in SHAPES)
    fh = FailoverHosts(
        free_mib=free_mib,
        squeezable_mib=squeezable,
        eligible=np.ones(n_hosts, dtype=bool),
        shape=np.arange(n_hosts, dtype=np.int64) % len(SHAPES),
        shapes=shapes,
    )
    return fh, protected_domains(host=hosts, guests=guests)


def subset(
    hosts: FailoverHosts, domains: ProtectedDomains, n: int
) -> tuple[FailoverHosts, ProtectedDomains]:
    """The first n hosts and their domains."""
    keep = domains.host < n
    fh = FailoverHosts(
        free_mib=hosts.free_mib[:n],
        squeezable_mib=hosts.squeezable_mib[:n],
        eligible=hosts.eligible[:n],
        shape=hosts.shape[:n],
        shapes=hosts.shapes,
    )
    return fh, ProtectedDomains(
        host=domains.host[keep], guest=domains.guest[keep], guests=domains.guests
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    t0 = time.perf_counter()
    hosts, domains = generate(args.hosts)
    print(
        f"{args.hosts:,} hosts, {domains.n_domains:,} protected domains "
        f"({len(domains.guests):,} distinct guest shapes) built in {time.perf_counter() - t0:.1f} s; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    h1k, d1k = subset(hosts, domains, 1000)
    h100, d100 = subset(hosts, domains, 100)
    plans = {}

    def run(name: str, h: FailoverHosts, d: ProtectedDomains, r: int) -> float:
        def call() -> None:
            plans[name] = plan_failover(h, d, host_failures=r)

        ms = median_ms(call, args.repeats, warmup=False)
        p = plans[name]
        print(
            f"{name:<10} r={r} hosts={h.n_hosts:>6} tolerated={p.tolerated} exact={p.exact} "
            f"method={p.method} scenarios={p.scenarios} max_host_failures={p.max_host_failures} "
            f"(exact={p.max_host_failures_exact}) worst={p.worst.failed_hosts if p.worst else None} "
            f"squeeze_mib={p.worst.squeeze_mib if p.worst else 0} ms={ms:.1f}"
        )
        return ms

    r1_1000 = run("r1_1000", h1k, d1k, 1)
    r2_100 = run("r2_100", h100, d100, 2)
    r1 = run("r1_exact", hosts, domains, 1)
    admission = float("nan")
    print(
        f"failover engine {args.hosts} hosts: r1_exact_ms={r1:.1f} r1_1000_ms={r1_1000:.1f} "
        f"r2_100_ms={r2_100:.1f} admission_ms={admission:.1f} "
        f"tolerated={plans['r1_exact'].tolerated}"
    )


if __name__ == "__main__":
    main()
