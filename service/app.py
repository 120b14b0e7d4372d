"""Application factory."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError

from service.api import (
    agent,
    api_keys,
    cluster,
    docs,
    domains,
    events,
    guest,
    hosts,
    migrations,
    ops,
    placements,
    ui,
)
from service.api.authentication import Authentication
from service.api.filters import reject_unknown_query
from service.api.forwarded import ForwardedHeaders, TrustedProxies
from service.api.headers import SecurityHeaders
from service.api.lean import LeanRoutes
from service.api.middleware import MethodRules, Metrics, RequestLimits
from service.api.problems import install_problem_handlers
from service.api.ratelimit import Limits
from service.api.session import make_signer
from service.api.watch import EventHub
from service.core.events import EventLog
from service.core.leases import sweep_leases
from service.core.sweeper import purge_idempotency_records, sweep_migrations
from service.core.unit import Database, open_database
from service.schemas.common import Problem
from service.settings import Settings, get_settings

DESCRIPTION = """
numa-balloon decides where a virtual machine's memory lives on NUMA hardware and how it moves.

It models hosts with their physical NUMA nodes (pnodes, with ACPI SLIT distances) and domains with
a *virtual* NUMA topology (vnodes); it computes per-vnode balloon targets, host-wide squeezes,
placements and the unplug/replug plans a domain needs to migrate between topologies.

Use **Authorize** with an API key (`POST /v1/api-keys`; roles admin, operator, scheduler, enroll,
viewer) or the bootstrap admin token (`NUMA_BALLOON_ADMIN_TOKEN`, printed by `make run`).
Errors are RFC 9457 `application/problem+json`.

**Orchestrators** need no polling loop: `GET /v1/events?since=N&wait=S` answers as soon as
something happens (or `GET /v1/events/stream`, Server-Sent Events); `auto_advance` on a migration
or an evacuation lets the service move each phase on as agents and guests complete the steps.
`POST /v1/placements` previews a placement; hosts and domains carry your `external_id` and
`labels`. A domain's ETag moves only with what the toolstack owns, never with guest or agent
reports, so `If-Match` is safe to use.
"""


def _operation_id(route: APIRoute) -> str:
    return route.name


async def _sweep_forever(app: FastAPI) -> None:
    """Judge lost the hosts whose agent's lease lapsed, free lapsed claims, flag stuck
    migrations and delete expired Idempotency-Key records every `sweep_interval_s`, on every
    replica."""
    settings: Settings = app.state.settings
    log = logging.getLogger("numa_balloon")
    while True:
        await asyncio.sleep(settings.sweep_interval_s)
        try:
            now = app.state.clock()
            factory = app.state.db.write_factory
            await anyio.to_thread.run_sync(sweep_leases, app.state.db, now)
            await anyio.to_thread.run_sync(sweep_migrations, factory, now, settings)
            await anyio.to_thread.run_sync(purge_idempotency_records, factory, now)
        except SQLAlchemyError as exc:  # the database is away: try again next round
            log.warning("sweep failed: %s", exc)


# Python's default collects the youngest generation every 700 allocations: a list page or a
# batch report builds thousands of objects, so each request ran several collections, and the
# objects every request leaves behind (ORM states, schema models) made the full ones slow:
# GET /v1/domains?limit=50 at 10,000 hosts took p50 77 ms, p99 242 ms; with the startup heap
# frozen and this threshold, 38 and 53 ms. Nearly all garbage here is freed by reference
# counting; the collector is only for cycles.
GC_THRESHOLD = (20_000, 20, 20)


def _tune_gc() -> None:
    """Move everything alive after start-up (modules, routes, schemas) out of the collector's
    reach, and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The OpenAPI document (MethodRules reads its literal paths) is built before the first
    # request, not during it: ~200 ms of CPU that stalled each worker's first request.
    app.openapi()
    _tune_gc()
    db: Database = app.state.db
    # The hottest statements' plain connections belong to this worker's event loop.
    await db.plain.open()
    await db.plain_writes.open()
    task = None
    if app.state.settings.sweep_interval_s > 0:
        task = asyncio.create_task(_sweep_forever(app), name="numa-balloon-sweeper")
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await db.plain.close()
        await db.plain_writes.close()


def _event_hub(db: Database, registry: CollectorRegistry, settings: Settings) -> EventHub:
    """One per process; every commit of a write session pokes it (see service.api.watch)."""
    hub = EventHub(
        EventLog(db),
        settings.events_poll_s,
        max_waiters=settings.events_max_waiters,
        max_per_key=settings.events_max_waiters_per_key,
        registry=registry,
    )
    event.listen(db.write_factory, "after_commit", hub.poke)
    db.plain_writes.after_commit.append(hub.poke)  # the target writes on the event loop
    return hub


def wall_clock() -> datetime:
    """The one read of the wall clock in the service: each request's `now` (`deps.get_now`)
    and each sweep's come from the app's clock, this one unless a test gives its own. Every
    decision, row and event of a request is stamped with that one `now`."""
    return datetime.now(UTC)


def create_app(
    settings: Settings | None = None, clock: Callable[[], datetime] = wall_clock
) -> FastAPI:
    settings = settings or get_settings()
    # Swagger UI and ReDoc from the assets the fastapi-offline package ships: /docs works with no
    # network (an air-gapped control plane), not only when a CDN is reachable.
    app = FastAPIOffline(
        lifespan=_lifespan,
        title="numa-balloon",
        version="0.1.0",
        description=DESCRIPTION,
        generate_unique_id_function=_operation_id,
        swagger_ui_parameters={"persistAuthorization": True},
        dependencies=[Depends(reject_unknown_query)],
    )
    db = open_database(settings.database_url, settings.db_concurrency)
    app.state.settings = settings
    app.state.clock = clock
    # Reports older than this worker's start are not trusted to match what it holds: the first
    # lease renewal of each host after a restart asks for a full report (core/leases.py).
    app.state.booted_at = clock()
    app.state.db = db  # every unit of work opens here (service/core/unit.py)
    # The same objects under their own names, for tests and tools that read the database.
    app.state.engine = db.engine
    app.state.sessionmaker = db.write_factory
    app.state.read_sessionmaker = db.read_factory
    app.state.lookup_sessionmaker = db.lookup_factory
    app.state.db_gate = db.gate
    app.state.registry = CollectorRegistry()
    app.state.event_hub = _event_hub(db, app.state.registry, settings)
    app.state.limits = Limits(settings.key_rate_per_s, settings.failed_auth_per_min)
    app.state.ui_signer = make_signer(settings)

    install_problem_handlers(app)
    modules = (hosts, domains, placements, migrations, cluster, events, guest, agent, ops, ui)
    for module in (*modules, api_keys):
        app.include_router(module.router)

    app.add_middleware(LeanRoutes)  # innermost: serves the lean routes Authentication matched
    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.max_body_bytes,
        max_json_depth=settings.max_json_depth,
    )
    app.add_middleware(MethodRules, openapi=lambda: app.openapi())
    # Outside the body limits: the caller is known (or refused) before the body is read.
    app.add_middleware(Authentication)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(Metrics, registry=app.state.registry)
    # Outermost: the client's address and scheme, read from a trusted proxy's headers only.
    app.add_middleware(ForwardedHeaders, trusted=TrustedProxies(settings.trusted_proxy_networks))

    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default_openapi()
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            # Nested models (ValidationIssue) go next to Problem, where its $refs point.
            schemas.update(problem.pop("$defs", {}))
            schemas["Problem"] = problem
            docs.apply(schema, public_metrics=settings.public_metrics)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    logging.getLogger("numa_balloon").setLevel(logging.INFO)
    return app
