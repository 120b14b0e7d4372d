"""Application factory."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry

from service.api import agent, cluster, domains, events, guest, hosts, migrations, ops, ui
from service.api.middleware import Metrics, RequestLimits
from service.api.problems import install_problem_handlers
from service.db.base import utcnow
from service.db.session import make_engine, make_read_sessionmaker, make_sessionmaker
from service.schemas.common import Problem
from service.settings import Settings, get_settings

DESCRIPTION = """
numa-balloon decides where a virtual machine's memory lives on NUMA hardware and how it moves.

It models hosts with their physical NUMA nodes (pnodes, with ACPI SLIT distances) and domains with
a *virtual* NUMA topology (vnodes); it computes per-vnode balloon targets, host-wide squeezes,
placements and the unplug/replug plans a domain needs to migrate between topologies.

Use **Authorize** with the admin token (`NUMA_BALLOON_ADMIN_TOKEN`, printed by `make run`).
Errors are RFC 9457 `application/problem+json`.
"""


def _operation_id(route: APIRoute) -> str:
    return route.name


def create_app(settings: Settings | None = None, clock: Callable[[], datetime] = utcnow) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="numa-balloon",
        version="0.1.0",
        description=DESCRIPTION,
        generate_unique_id_function=_operation_id,
        swagger_ui_parameters={"persistAuthorization": True},
    )
    engine = make_engine(settings.database_url)
    app.state.settings = settings
    app.state.clock = clock
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.read_sessionmaker = make_read_sessionmaker(engine)
    n = settings.db_concurrency
    app.state.db_gate = threading.BoundedSemaphore(n) if n else None
    app.state.registry = CollectorRegistry()

    install_problem_handlers(app)
    for module in (hosts, domains, migrations, cluster, events, guest, agent, ops, ui):
        app.include_router(module.router)

    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.max_body_bytes,
        max_json_depth=settings.max_json_depth,
    )
    app.add_middleware(Metrics, registry=app.state.registry)

    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default_openapi()
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            # Nested models (ValidationIssue) go next to Problem, where its $refs point.
            schemas.update(problem.pop("$defs", {}))
            schemas["Problem"] = problem
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    logging.getLogger("numa_balloon").setLevel(logging.INFO)
    return app
