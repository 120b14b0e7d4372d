"""Load test: a real multi-worker uvicorn, many concurrent clients, then an accounting audit.

Clients run a mix of domain creates (with Idempotency-Key, some retried), target changes (some
with a stale If-Match), squeezes, migrations (plan, start, advance, abort), deletes and reads for
a bounded time, while one agent per host acknowledges steps and sends heartbeats. Afterwards the
auditor recomputes every host's accounting from the domains and the live claims of migrations, all
read back through the API, and compares it with what `GET /v1/hosts/{id}/accounting` reports
(and, given the database, with the rows). Pass criteria: zero 5xx, no status outside each
operation's contract, zero overcommitted pnodes, zero accounting differences, no duplicate create.

    python -m bench.load [--db URL] [--workers 2] [--clients 32] [--seconds 20]

Without --db it creates a scratch PostgreSQL database on 127.0.0.1:5432 and drops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import httpx
import numpy as np

from numa_balloon_client import (
    ApiError,
    AsyncClient,
    Call,
    ConnectionFailed,
    RetryPolicy,
    ops,
    with_status,
)
from numa_balloon_testing.server import Server
from service.db.invariants import audit_db
from service.engine.accounting import charge_mib

T = TypeVar("T")
#: The load measures the server: every answer counts, so the client never retries on its own.
NO_RETRY = RetryPolicy(attempts=1)

PG_ADMIN_DSN = os.environ.get("NUMA_BALLOON_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
ACTIVE = ("planned", "preparing", "migrating", "settling")

# Every status each operation may answer under load; anything else is a contract violation.
ALLOWED: dict[str, set[int]] = {
    "create": {201, 409},
    "create-retry": {201, 409},
    "target": {200, 404, 409, 412},
    "squeeze": {200, 404, 409},
    "plan": {200, 404, 409, 422},
    "start": {201, 404, 409, 422},
    "advance": {200, 404, 409},
    "abort": {200, 404, 409},
    "delete": {204, 404, 409},
    "read-domain": {200, 404},
    "read-accounting": {200},
    "list-domains": {200},
    "read-migration": {200, 404},  # deleting a domain removes its migrations
    "agent-steps": {200},
    "agent-ack": {200, 404, 409},
    "agent-observed": {200},
}


def slit(n: int, per_socket: int = 1) -> list[list[int]]:
    return [
        [10 if i == j else 12 if i // per_socket == j // per_socket else 21 for j in range(n)]
        for i in range(n)
    ]


HOSTS = [
    ("load-one", 1, 49152, 1),
    ("load-two", 2, 24576, 1),
    ("load-four", 4, 12288, 2),
    ("load-four-b", 4, 12288, 1),
]


def _floor_refusal(op: str, status: int, text: str) -> bool:
    """A random total within [dynamic_min, dynamic_max] that the domain's policy would spread
    with a vnode below its floor (`service.engine.floors`) is refused with a 422 that says so:
    the service's rule, not a contract violation."""
    return op == "target" and status == 422 and "below what the vnode always keeps" in text


@dataclass
class Stats:
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    transport_errors: Counter[str] = field(default_factory=Counter)
    idempotency_mismatches: list[str] = field(default_factory=list)

    def record(self, op: str, status: int, text: str = "") -> None:
        self.statuses[(op, status)] += 1
        if _floor_refusal(op, status, text):
            return
        if status not in ALLOWED[op] and len(self.unexpected) < 50:
            self.unexpected.append(f"{op} -> {status}: {text[:300]}")

    async def call(self, op: str, nb: AsyncClient, call: Call[T]) -> tuple[int, T | None]:
        """Send one call through the client; count its status, whatever it is."""
        try:
            status, body = await nb.run(with_status(call))
        except ApiError as exc:
            self.record(op, exc.status, str(exc))
            return exc.status, None
        except ConnectionFailed as exc:
            self.transport_errors[f"{op}: {type(exc.cause).__name__}"] += 1
            return 0, None
        self.record(op, status)
        return status, body

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(n for (_, s), n in self.statuses.items() if s >= 500)


@dataclass
class Audit:
    pnodes: int = 0
    overcommitted: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    charge_differences: list[str] = field(default_factory=list)
    leaked_claims: list[str] = field(default_factory=list)
    domains: int = 0
    active_migrations: int = 0


@dataclass
class World:
    hosts: list[dict[str, Any]]
    domains: list[str] = field(default_factory=list)
    migrations: list[str] = field(default_factory=list)
    created_by_key: dict[str, str] = field(default_factory=dict)


@dataclass
class LoadResult:
    stats: Stats
    audit: Audit
    seconds: float
    clients: int
    workers: int

    @property
    def ok(self) -> bool:
        s, a = self.stats, self.audit
        return not (
            s.server_errors
            or s.unexpected
            or s.transport_errors
            or s.idempotency_mismatches
            or a.overcommitted
            or a.differences
            or a.duplicates
            or a.charge_differences
            or a.leaked_claims
        )

    def summary(self) -> str:
        s, a = self.stats, self.audit
        return (
            f"load c{self.clients} w{self.workers}: requests={s.requests} "
            f"rps={s.requests / self.seconds:.1f} 5xx={s.server_errors} "
            f"unexpected={len(s.unexpected)} transport_errors={sum(s.transport_errors.values())} "
            f"overcommits={len(a.overcommitted)} accounting_differences={len(a.differences)} "
            f"allocated_vs_charges={len(a.charge_differences)} "
            f"leaked_claims={len(a.leaked_claims)} "
            f"duplicates={len(a.duplicates) + len(s.idempotency_mismatches)} "
            f"pnodes={a.pnodes} domains={a.domains} active_migrations={a.active_migrations}"
        )


def domain_body(rng: random.Random, name: str, host_id: str | None) -> dict[str, Any]:
    k = rng.choice([1, 1, 2, 2, 4])
    size = rng.choice([512, 1024, 2048])
    total = size * k
    dmin = rng.choice([total // 4, total // 2])
    body: dict[str, Any] = {
        "name": name,
        "memory": {
            "dynamic_min_mib": dmin,
            "dynamic_max_mib": total,
            "target_mib": rng.randrange(dmin, total + 1, 128) if dmin % 128 == 0 else total,
        },
        "vnodes": [
            {
                "size_mib": size,
                "vcpus": [2 * v, 2 * v + 1],
                "distances": [10 if u == v else 21 for u in range(k)],
            }
            for v in range(k)
        ],
        "policy": rng.choice(["proportional", "round-robin", "nearest", "faithful"]),
    }
    if host_id is not None:
        body["host_id"] = host_id
    return body


class Driver:
    def __init__(self, client: AsyncClient, world: World, stats: Stats, seed: int) -> None:
        self.c = client
        self.w = world
        self.s = stats
        self.rng = random.Random(seed)
        self.n = 0

    async def call(self, op: str, call: Call[T]) -> tuple[int, T | None]:
        return await self.s.call(op, self.c, call)

    def _domain(self) -> str | None:
        return self.rng.choice(self.w.domains) if self.w.domains else None

    async def create(self) -> None:
        self.n += 1
        name = f"ld-{uuid.uuid4().hex[:12]}"
        host = self.rng.choice([*self.w.hosts, None])
        body = domain_body(self.rng, name, host["id"] if host else None)
        key = f"create-{name}"
        status, created = await self.call("create", ops.create_domain(body, key))
        if status == 0:
            return
        if created is not None:
            self.w.domains.append(created.id)
            self.w.created_by_key[key] = created.id
        if self.rng.random() < 0.3:  # a client that did not see the answer retries
            again_status, again = await self.call("create-retry", ops.create_domain(body, key))
            lost = again is None or created is None or again.id != created.id
            if again_status != 0 and created is not None and lost:
                self.s.idempotency_mismatches.append(f"{key}: {again_status}")

    async def target(self) -> None:
        did = self._domain()
        if did is None:
            return
        _, d = await self.call("read-domain", ops.get_domain(did))
        if d is None:
            return
        mem = d.memory
        target = self.rng.randrange(mem.dynamic_min_mib, mem.dynamic_max_mib + 1, 128)
        if_match = None
        if self.rng.random() < 0.5:
            stale = self.rng.random() < 0.2
            if_match = f'"{d.version - 1 if stale else d.version}"'
        await self.call("target", ops.set_target(did, {"target_mib": target}, if_match))

    async def squeeze(self) -> None:
        host = self.rng.choice(self.w.hosts)
        body: dict[str, Any] = {"dry_run": self.rng.random() < 0.3}
        if self.rng.random() < 0.2:
            body["balance"] = True
        else:
            body["keep_total_free_mib"] = self.rng.choice([512, 1024, 4096, 8192])
        await self.call("squeeze", ops.squeeze(host["id"], body))

    async def migrate(self) -> None:
        did = self._domain()
        if did is None:
            return
        _, d = await self.call("read-domain", ops.get_domain(did))
        if d is None or d.host_id is None:
            return
        dst = self.rng.choice([h for h in self.w.hosts if h["id"] != d.host_id])
        body = {"domain_id": did, "destination_host_id": dst["id"]}
        if self.rng.random() < 0.3:
            await self.call("plan", ops.plan_migration(body))
        _, started = await self.call("start", ops.start_migration(body, f"mig-{uuid.uuid4().hex}"))
        if started is None:
            return
        mid = started.id
        self.w.migrations.append(mid)
        abort_at = self.rng.choice([None, None, 0, 1, 2])
        for i in range(12):
            if abort_at is not None and i == abort_at:
                await self.call("abort", ops.abort_migration(mid))
                return
            _, a = await self.call("advance", ops.advance_migration(mid))
            if a is not None and a.state not in ACTIVE:
                return
            await asyncio.sleep(0.02 + 0.05 * self.rng.random())

    async def delete(self) -> None:
        if len(self.w.domains) < 20:
            return
        did = self._domain()
        if did is None:
            return
        status, _ = await self.call("delete", ops.delete_domain(did, None))
        if status in (204, 404) and did in self.w.domains:
            self.w.domains.remove(did)

    async def read(self) -> None:
        pick = self.rng.random()
        if pick < 0.4 and self.w.domains:
            await self.call("read-domain", ops.get_domain(self.rng.choice(self.w.domains)))
        elif pick < 0.7:
            host = self.rng.choice(self.w.hosts)
            await self.call("read-accounting", ops.host_accounting(host["id"]))
        elif pick < 0.85 and self.w.migrations:
            mid = self.rng.choice(self.w.migrations)
            await self.call("read-migration", ops.get_migration(mid))
        else:
            await self.call("list-domains", ops.list_domains(None, 20, None, None, None, None))

    async def run(self, budget: Budget) -> None:
        ops: list[tuple[Callable[[], Awaitable[None]], float]] = [
            (self.create, 3),
            (self.target, 4),
            (self.squeeze, 1),
            (self.migrate, 1.5),
            (self.delete, 1.5),
            (self.read, 5),
        ]
        fns, weights = zip(*ops, strict=True)
        while budget.more():
            await self.rng.choices(fns, weights)[0]()


async def agent(url: str, host: dict[str, Any], stats: Stats, budget: Budget) -> None:
    """The host agent: acknowledge every pending step, heartbeat now and then."""
    host_id = host["id"]
    async with AsyncClient(url, host["agent_token"], timeout_s=60, retry=NO_RETRY) as c:
        beat = 0
        observed = {
            "pnodes": [{"index": p["index"], "free_mib": p["capacity_mib"]} for p in host["pnodes"]]
        }
        while budget.more():
            _, steps = await stats.call("agent-steps", c, ops.agent_steps(host_id))
            for step in steps.items[:50] if steps is not None else []:
                await stats.call("agent-ack", c, ops.agent_ack(host_id, step.id, True, None))
            beat += 1
            if beat % 5 == 0:
                await stats.call("agent-observed", c, ops.agent_observed(host_id, observed))
            await asyncio.sleep(0.05)


async def audit_api(url: str, token: str) -> Audit:
    """Recompute every host's accounting from domains and live claims, as the API shows them
    (as plain JSON data: the auditor compares numbers, not models)."""
    out = Audit()
    async with AsyncClient(url, token, timeout_s=120) as c:
        hosts = [h.model_dump(mode="json") async for h in c.iter_hosts(limit=500)]
        domains = [d.model_dump(mode="json") async for d in c.iter_domains(limit=500)]
        migrations = [m.model_dump(mode="json") async for m in c.iter_migrations(limit=500)]
        accounting = {}
        for h in hosts:
            accounting[h["id"]] = (await c.host_accounting(h["id"])).model_dump(mode="json")
    out.domains = len(domains)
    now = time.time()
    by_host: dict[str, list[dict[str, Any]]] = {}
    for d in domains:
        if d["host_id"] is not None:
            by_host.setdefault(d["host_id"], []).append(d)
    claims: dict[tuple[str, int], int] = Counter()
    for m in migrations:
        if m["state"] in ACTIVE:
            out.active_migrations += 1
        for cl in m["claims"]:
            # A null expiry is a claim held until its migration ends (it is past planned).
            lease = cl["expires_at"]
            if lease is None or datetime.fromisoformat(lease).timestamp() > now:
                claims[(cl["host_id"], cl["pnode"])] += cl["mib"]
        if m["state"] not in ACTIVE and m["claims"]:
            out.leaked_claims.append(f"migration {m['id']} is {m['state']} and holds claims")
    for h in hosts:
        acc = accounting[h["id"]]
        p = len(h["pnodes"])
        ds = by_host.get(h["id"], [])
        charged = np.zeros(p, dtype=np.int64)
        if ds:
            vmax = max(len(d["vnodes"]) for d in ds)
            x = np.zeros((len(ds), vmax, p), dtype=np.int64)
            actual = np.full((len(ds), vmax), -1, dtype=np.int64)
            home = np.zeros((len(ds), vmax), dtype=np.int64)
            for i, d in enumerate(ds):
                for vn in d["vnodes"]:
                    x[i, vn["index"]] = vn["backing_mib"]
                    actual[i, vn["index"]] = -1 if vn["actual_mib"] is None else vn["actual_mib"]
                    home[i, vn["index"]] = vn["home_pnode"] or 0
            charged = charge_mib(backing_mib=x, actual_mib=actual, home=home).sum(axis=(0, 1))
        reported_backing = {b["domain_id"]: b["backing_mib"] for b in acc["domains"]}
        for d in ds:
            held = sum(sum(vn["backing_mib"]) for vn in d["vnodes"])
            if d["state"] == "running" and held != d["memory"]["target_mib"]:
                out.differences.append(
                    f"domain {d['id']}: backing {held} != target {d['memory']['target_mib']}"
                )
            mine = [vn["backing_mib"] for vn in d["vnodes"]]
            if reported_backing.get(d["id"]) != mine:
                out.differences.append(f"host {h['name']} domain {d['id']}: backing differs")
        # The accounting explains itself: allocated is the sum of the charges it lists.
        listed = np.zeros(p, dtype=np.int64)
        for row in acc["domains"]:
            listed += np.asarray(row["charged_mib"], dtype=np.int64).reshape(-1, p).sum(axis=0)
        for pn in acc["pnodes"]:
            i = pn["index"]
            out.pnodes += 1
            if pn["allocated_mib"] != int(listed[i]):
                out.charge_differences.append(
                    f"{h['name']}[{i}] allocated {pn['allocated_mib']} != Σ charged {listed[i]}"
                )
            want_alloc, want_claim = int(charged[i]), claims.get((h["id"], i), 0)
            if pn["allocated_mib"] != want_alloc:
                out.differences.append(
                    f"{h['name']}[{i}] allocated {pn['allocated_mib']} != recomputed {want_alloc}"
                )
            if pn["claimed_mib"] != want_claim:
                out.differences.append(
                    f"{h['name']}[{i}] claimed {pn['claimed_mib']} != recomputed {want_claim}"
                )
            if pn["free_mib"] != pn["capacity_mib"] - pn["allocated_mib"] - pn["claimed_mib"]:
                out.differences.append(f"{h['name']}[{i}] free_mib inconsistent")
            if want_alloc + want_claim > pn["capacity_mib"]:
                out.overcommitted.append(
                    f"{h['name']}[{i}] {want_alloc}+{want_claim} > {pn['capacity_mib']}"
                )
    names = Counter(d["name"] for d in domains)
    out.duplicates += [f"domain name {n} x{k}" for n, k in names.items() if k > 1]
    return out


@dataclass
class Budget:
    """When the load stops: after `seconds`, once `min_requests` were answered; never after
    ten times `seconds`."""

    stats: Stats
    seconds: float
    min_requests: int
    start: float = field(default_factory=time.monotonic)

    def more(self) -> bool:
        elapsed = time.monotonic() - self.start
        if elapsed < self.seconds:
            return True
        return self.stats.requests < self.min_requests and elapsed < 10 * self.seconds


async def _drive(
    url: str, token: str, clients: int, seconds: float, seed: int, min_requests: int
) -> tuple[Stats, World]:
    stats = Stats()
    async with AsyncClient(url, token, timeout_s=60) as c:
        hosts = []
        for name, n, mib, per_socket in HOSTS:
            body = {
                "name": f"{name}-{seed}",
                "pnodes": [{"memory_mib": mib, "reserved_mib": 0, "cpus": 8}] * n,
                "distances": slit(n, per_socket),
            }
            hosts.append((await c.create_host(body)).model_dump(mode="json"))
    world = World(hosts=hosts)
    budget = Budget(stats, seconds, min_requests)
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    pool = httpx.AsyncClient(base_url=url, timeout=60, limits=limits)  # sized for the clients
    async with pool, AsyncClient(url, token, http=pool, retry=NO_RETRY) as c:
        drivers = [Driver(c, world, stats, seed * 1000 + i) for i in range(clients)]
        await asyncio.gather(
            *(d.run(budget) for d in drivers),
            *(agent(url, h, stats, budget) for h in hosts),
        )
    return stats, world


def run_load(
    db_url: str,
    *,
    workers: int = 2,
    clients: int = 32,
    seconds: float = 20.0,
    seed: int = 1,
    min_requests: int = 0,
    env: dict[str, str] | None = None,
    log_path: str | None = None,
) -> LoadResult:
    """`seconds` of load, prolonged (up to ten times) until `min_requests` were answered: a
    slow or busy machine gets the same amount of work checked, not a smaller sample."""
    with Server(db_url, workers=workers, env=env, log_path=log_path) as srv:
        start = time.monotonic()
        stats, _ = asyncio.run(
            _drive(srv.url, srv.admin_token, clients, seconds, seed, min_requests)
        )
        elapsed = time.monotonic() - start
        audit = asyncio.run(audit_api(srv.url, srv.admin_token))
    audit.differences += audit_db(db_url)
    return LoadResult(stats, audit, elapsed, clients, workers)


@contextmanager
def scratch_postgres() -> Iterator[str]:
    import psycopg

    from service.db.alembic import upgrade

    name = f"nb_load_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def print_report(result: LoadResult) -> None:
    s = result.stats
    print(f"{'operation':<18}{'status':>7}{'count':>9}")
    for (op, status), n in sorted(s.statuses.items()):
        print(f"{op:<18}{status:>7}{n:>9}")
    for line in s.unexpected[:20]:
        print("UNEXPECTED", line)
    for name, n in s.transport_errors.items():
        print("TRANSPORT", name, n)
    for line in (
        s.idempotency_mismatches
        + result.audit.overcommitted
        + result.audit.differences
        + result.audit.duplicates
    )[:20]:
        print("AUDIT", line)
    print(result.summary())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", help="database URL (default: a scratch PostgreSQL database)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--log", help="append the server's log to this file")
    args = ap.parse_args()
    if args.db:
        result = run_load(
            args.db, workers=args.workers, clients=args.clients, seconds=args.seconds,
            seed=args.seed, log_path=args.log,
        )  # fmt: skip
    else:
        with scratch_postgres() as url:
            result = run_load(
                url, workers=args.workers, clients=args.clients, seconds=args.seconds,
                seed=args.seed, log_path=args.log,
            )  # fmt: skip
    print_report(result)
    raise SystemExit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
