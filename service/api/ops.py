"""Liveness, readiness (database reachable and migrated to head) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from service.api.auth import bearer_scheme
from service.api.deps import run_operation
from service.api.problems import problem_response, responses
from service.core.readiness import revisions

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database answers and is migrated to the latest revision")
async def readyz(request: Request) -> JSONResponse:
    try:
        found = await run_operation(request, revisions)
    except SQLAlchemyError as exc:
        return problem_response(
            503,
            "unavailable",
            "Not ready",
            f"database unreachable: {type(exc).__name__}",
            request,
            headers={"Retry-After": "2"},
        )
    if not found.migrated:
        return problem_response(
            503,
            "not-migrated",
            "Not ready",
            f"database at revision {found.current}, code expects {found.head}; run the migrations",
            request,
            headers={"Retry-After": "5"},
        )
    return JSONResponse({"status": "ready", "revision": found.current})


@router.get(
    "/metrics",
    summary="Prometheus metrics (a viewer key or better, unless NUMA_BALLOON_PUBLIC_METRICS)",
    response_class=Response,
    responses=responses(401, 403),
    # The Authentication middleware checks the token (the role table names `metrics`); this only
    # declares the scheme, so the OpenAPI document says a token is needed.
    dependencies=[Depends(bearer_scheme)],
)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
