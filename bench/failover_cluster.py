"""Failover benchmark through the service's core (issue 26): bench/cluster.py's cluster bulk-loaded
into PostgreSQL (10,000 hosts of four shapes, 20 domains each: 200,000 domains, every one
protected), then the core operations timed in this process on real sessions, as a request's
unit of work runs them (no HTTP: the router only hands the operation over).

* ``r1_exact_ms``: `POST /v1/cluster/failover-plan`'s operation (`core.failover.plan`), r = 1,
  without the restart list (200,000 rows of JSON), at 10,000 hosts: the two statements that
  read every host and protected domain, and the engine.
* ``r1_1000_ms``, ``r2_100_ms``: the same at r = 1 on 1,000 hosts and r = 2 on 100 (clusters
  generated alike, loaded apart).
* ``admission_ms``: what failover protection (r = 1, every domain) adds to one domain create
  (`core.domain_requests.create`, an 8 x 8 GiB guest placed by the ranking, rolled back each
  time): median with protection on minus median with it off, at 10,000 hosts. The admission
  (`core.failover.admit`) answers from the worker's kept plan (built once, when protection is
  turned on, in a session of its own): it reads the hosts changed since the kept snapshot (here
  the create's own host) and their protected domains, and calls the engine's `check_change`.

    python -m bench.failover_cluster [--quick] [--hosts N] [--repeats K]

The last line is the headline:

    failover 10000 hosts: r1_exact_ms=<float> r1_1000_ms=<float> r2_100_ms=<float>
        admission_ms=<float> tolerated=<bool>
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy.orm import Session

from bench.cluster import bulk_load, generate, guest_body
from bench.load import scratch_postgres
from bench.timing import median_ms
from service.core import domain_requests, failover, unit
from service.core.cluster import patch_cluster
from service.schemas.cluster import ClusterPatch
from service.schemas.domains import DomainCreate
from service.schemas.failover import FailoverPlanOut, FailoverPlanRequest, HaSettings

T = TypeVar("T")


CPU_MS: dict[str, float] = {}


def _timed(repeats: int, fn: Callable[[], T], name: str = "") -> tuple[float, T]:
    """Median wall ms of ``repeats`` calls (after one warm-up); this process's CPU ms per call
    is kept under ``name`` (the machine is shared: wall time counts the neighbours too)."""
    out: list[T] = []
    cpu0 = time.process_time()
    ms = median_ms(lambda: out.append(fn()), repeats)
    if name:
        CPU_MS[name] = (time.process_time() - cpu0) * 1000 / (repeats + 1)
    return ms, out[-1]


def plan_ms(url: str, r: int, repeats: int) -> tuple[float, FailoverPlanOut]:
    db = unit.open_database(url)
    body = FailoverPlanRequest(host_failures=r, restarts=False)
    try:
        return _timed(repeats, lambda: unit.run(db, lambda s: failover.plan(s, body)), f"plan{r}")
    finally:
        db.engine.dispose()


def _create(db: unit.Database, now: datetime) -> None:
    body = DomainCreate.model_validate(guest_body(f"bench-{uuid.uuid4().hex[:12]}"))

    def work(session: Session) -> None:
        domain_requests.create(session, body, "bench", now)
        unit.discard(session)  # rolled back: every create sees the same cluster

    unit.run(db, work)


def admission_ms(url: str, repeats: int) -> tuple[float, float, float]:
    """(create with protection off, with it on, on - off) medians in ms."""
    db = unit.open_database(url)
    now = datetime.now(UTC)
    try:
        off, _ = _timed(repeats, lambda: _create(db, now), "create_off")
        on_body = ClusterPatch(ha=HaSettings(host_failures=1))
        unit.run(db, lambda s: patch_cluster(s, on_body, "bench", now))
        on, _ = _timed(repeats, lambda: _create(db, now), "create_on")
        unit.run(db, lambda s: patch_cluster(s, ClusterPatch(ha=None), "bench", now))
        return off, on, on - off
    finally:
        db.engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="300 hosts: a smoke run")
    ap.add_argument("--hosts", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    n_hosts = args.hosts or (300 if args.quick else 10_000)
    repeats = args.repeats or (3 if args.quick else 5)
    figures: dict[str, float] = {}
    tolerated = False
    for size, r, key in (
        (n_hosts, 1, "r1_exact_ms"),
        (1000, 1, "r1_1000_ms"),
        (100, 2, "r2_100_ms"),
    ):
        size = min(size, n_hosts)
        t0 = time.perf_counter()
        cl, rows = generate(size)
        with scratch_postgres() as url:
            load_s = bulk_load(url, rows)
            ready_s = time.perf_counter() - t0
            del rows
            ms, plan = plan_ms(url, r, repeats)
            figures[key] = ms
            print(
                f"{size:,} hosts, {len(cl.domain_ids):,} domains (generated and loaded in "
                f"{ready_s:.1f} s, COPY {load_s:.1f} s): r={r} plan "
                f"{ms:.1f} ms (engine's own {plan.duration_ms:.1f} ms) tolerated={plan.tolerated} "
                f"exact={plan.exact} method={plan.method} scenarios={plan.scenarios} "
                f"max_host_failures={plan.max_host_failures}; "
                f"CPU {CPU_MS[f'plan{r}']:.1f} ms a call"
            )
            if key == "r1_exact_ms":
                tolerated = plan.tolerated and plan.exact
                off, on, added = admission_ms(url, repeats)
                figures["admission_ms"] = added
                print(
                    f"create of an 8 x 8 GiB guest at {size:,} hosts: protection off {off:.1f} ms, "
                    f"on {on:.1f} ms, added {added:.1f} ms (CPU a call: off "
                    f"{CPU_MS['create_off']:.1f} ms, on {CPU_MS['create_on']:.1f} ms)"
                )
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; medians of {repeats}")
    print(
        f"failover {n_hosts} hosts: r1_exact_ms={figures['r1_exact_ms']:.1f} "
        f"r1_1000_ms={figures['r1_1000_ms']:.1f} r2_100_ms={figures['r2_100_ms']:.1f} "
        f"admission_ms={figures['admission_ms']:.1f} tolerated={tolerated}"
    )


if __name__ == "__main__":
    main()
