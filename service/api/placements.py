"""Placement preview: where would a domain go, before it exists? Nothing is created or claimed."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.api.auth import Admin
from service.api.deps import run
from service.api.filters import PlacementLimit
from service.api.problems import responses
from service.core import placement
from service.core.placement import DEFAULT_LIMIT
from service.core.views import placement_out
from service.schemas.domains import PlacementPreview, PlacementRequest

router = APIRouter(prefix="/v1/placements", tags=["domains"])


@router.post(
    "",
    response_model=PlacementPreview,
    responses=responses(401, 403, 404, 409, 413, 422),
    summary="Rank the hosts for a domain that does not exist yet; nothing is created.",
    description="""
Called by a scheduler (admin token) before it commits to a host. The body is a domain's create
body with `name` and `host_id` optional (`host_id` evaluates that host alone). The answer ranks
the active hosts best first, as `POST /v1/domains` would try them now: each with the vnode ->
pnode `mapping`, `distortion` (virtual vs physical distance mismatch), `score`, the `reason` it
cannot take the domain, `free_mib`, and `max_feasible_mib`, the largest target it could back.
Nothing is written, reserved or claimed: a later create may still find the host taken.
""",
)
async def preview(
    body: PlacementRequest, request: Request, _: Admin, limit: PlacementLimit = DEFAULT_LIMIT
) -> PlacementPreview:
    ranked = await run(request, placement.preview, body, limit)
    return PlacementPreview(hosts=[placement_out(r) for r in ranked])
