"""Failover planner benchmark at the engine level: the cluster benchmark's hosts and domains
built as arrays (no database), then the failover plan timed at the sizes of issue 26.

The cluster is bench/cluster.py's: hosts of four real shapes in turn (1 node; 2 sockets; AMD
EPYC NPS4 on 2 sockets, 8 nodes; 4-socket Xeon SNC4, 16 nodes; 512 GiB each, 8 GiB of node 0
held back), 20 domains per host of 2-16 vnodes of 1 or 2 GiB homed from the pnode with the most
room, every domain protected, at its target, squeezable down to half (dynamic_min = target / 2).

    python -m bench.failover [--quick] [--hosts N] [--repeats K]

Wall times are medians of K runs; ``cpu_ms`` (this process's CPU time per run) is printed next to
them because the machine the figures are taken on is shared: when the load average exceeds the
cores, wall time measures the neighbours too.

The last line is the headline:

    failover engine 10000 hosts: r1_exact_ms=<float> r1_1000_ms=<float> r2_100_ms=<float>
        admission_ms=<float> tolerated=<bool>
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from bench.cluster import (
    DOMAINS_PER_HOST,
    GUEST_VNODE_MIB,
    GUEST_VNODES,
    SHAPES,
    VCPUS_PER_VNODE,
    Shape,
    slit,
)
from bench.timing import median_ms
from service.engine.failover import (
    Admission,
    DomainChange,
    FailoverHosts,
    FailoverPlan,
    GuestShape,
    HostChange,
    ProtectedDomains,
    check_change,
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


def admission_ms(
    plan: FailoverPlan, hosts: FailoverHosts, domains: ProtectedDomains, repeats: int
) -> dict[str, float]:
    """One check of each kind on the plan's busiest restart host (the most scenarios restart
    something there): a create of bench/cluster.py's guest (8 vnodes of 8 GiB) on it, a target
    raised by 1 GiB on one of its domains, and the host set to maintenance."""
    state = plan.state
    assert state.level.sweep is not None
    used = state.level.sweep.pairs.host
    h = int(np.bincount(used[used >= 0]).argmax())
    p = hosts.shapes[int(hosts.shape[h])].shape[0]
    vd = np.array(slit(GUEST_VNODES, 4, 12, 21), dtype=np.int64)
    new = GuestShape(
        restart_mib=np.full(GUEST_VNODES, GUEST_VNODE_MIB, dtype=np.int64),
        vcpu_count=np.full(GUEST_VNODES, 4, dtype=np.int64),
        vdist=vd,
    )
    free = hosts.free_mib[h, :p].copy()
    need = GUEST_VNODES * GUEST_VNODE_MIB
    for q in np.argsort(-free, kind="stable").tolist():
        take = min(int(free[q]), need)
        free[q] -= take
        need -= take
    d = int(np.flatnonzero(domains.host == h)[0])
    old = domains.guests[int(domains.guest[d])]
    bigger = GuestShape(
        restart_mib=old.restart_mib + np.eye(old.restart_mib.shape[0], dtype=np.int64)[0] * 1024,
        vcpu_count=old.vcpu_count,
        vdist=old.vdist,
    )
    raised = hosts.free_mib[h, :p].copy()
    raised[int(np.argmax(raised))] -= 1024
    checks: dict[str, Callable[[], Admission]] = {
        "create": lambda: check_change(
            state,
            hosts=(HostChange(host=h, free_mib=free),),
            domains=(DomainChange(domain=None, host=h, guest=new),),
        ),
        "raise": lambda: check_change(
            state,
            hosts=(HostChange(host=h, free_mib=raised),),
            domains=(DomainChange(domain=d, host=h, guest=bigger),),
        ),
        "maintenance": lambda: check_change(state, hosts=(HostChange(host=h, eligible=False),)),
    }
    out = {}
    for name, fn in checks.items():
        c0 = time.process_time()
        out[name] = median_ms(fn, repeats)
        cpu = (time.process_time() - c0) * 1e3 / (repeats + 1)
        print(
            f"admission {name:<12} ms={out[name]:.1f} cpu_ms={cpu:.1f} "
            f"tolerated={fn().tolerated} (on host {h})"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="300 hosts, one repeat: a smoke run")
    args = ap.parse_args()
    args.hosts = args.hosts or (300 if args.quick else 10_000)
    args.repeats = 1 if args.quick else args.repeats
    t0 = time.perf_counter()
    hosts, domains = generate(args.hosts)
    print(
        f"{args.hosts:,} hosts, {domains.n_domains:,} protected domains "
        f"({len(domains.guests):,} distinct guest shapes) built in "
        f"{time.perf_counter() - t0:.1f} s; load average {os.getloadavg()[0]:.2f}"
    )
    print(f"load average before the measures: {os.getloadavg()[0]:.2f}")
    h1k, d1k = subset(hosts, domains, min(1000, args.hosts))
    h100, d100 = subset(hosts, domains, min(100, args.hosts))
    plans = {}

    def run(name: str, h: FailoverHosts, d: ProtectedDomains, r: int) -> float:
        def call() -> None:
            plans[name] = plan_failover(h, d, host_failures=r)

        c0 = time.process_time()
        ms = median_ms(call, args.repeats, warmup=False)
        cpu = (time.process_time() - c0) * 1e3 / args.repeats
        p = plans[name]
        print(
            f"{name:<10} r={r} hosts={h.n_hosts:>6} tolerated={p.tolerated} exact={p.exact} "
            f"method={p.method} scenarios={p.scenarios} max_host_failures={p.max_host_failures} "
            f"(exact={p.max_host_failures_exact}) "
            f"worst={p.worst.failed_hosts if p.worst else None} "
            f"squeeze_mib={p.worst.squeeze_mib if p.worst else 0} ms={ms:.1f} cpu_ms={cpu:.1f}"
        )
        return ms

    r1_1000 = run("r1_1000", h1k, d1k, 1)
    r2_100 = run("r2_100", h100, d100, 2)
    r1 = run("r1_exact", hosts, domains, 1)
    adm = admission_ms(plans["r1_exact"], hosts, domains, max(args.repeats, 5))
    admission = max(adm.values())
    print(f"load average after the measures: {os.getloadavg()[0]:.2f}")
    print(
        f"failover engine {args.hosts} hosts: r1_exact_ms={r1:.1f} r1_1000_ms={r1_1000:.1f} "
        f"r2_100_ms={r2_100:.1f} admission_ms={admission:.1f} "
        f"tolerated={plans['r1_exact'].tolerated}"
    )


if __name__ == "__main__":
    main()
