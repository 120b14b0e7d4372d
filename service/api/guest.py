"""The guest API: a domain's own virtual view, and its balloon driver's reports.

The guest token identifies the domain; no route takes an id, so a guest cannot name anything but
itself. Responses are built only from `service.schemas.guest` types (`service.core.guests`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.api.auth import Guest, Principal
from service.api.deps import Now, SettingsDep, run, run_operation
from service.api.problems import responses
from service.core import guests as core
from service.schemas.guest import BalloonReport, GuestBalloon, GuestTopology

router = APIRouter(prefix="/v1/guest", tags=["guest"])


def _domain_id(principal: Principal) -> str:
    assert principal.subject_id is not None
    return principal.subject_id


@router.get("/topology", response_model=GuestTopology, responses=responses(401, 403))
async def topology(request: Request, principal: Guest) -> GuestTopology:
    return await run(request, core.topology, _domain_id(principal))


@router.get("/balloon", response_model=GuestBalloon, responses=responses(401, 403))
async def balloon(request: Request, principal: Guest, now: Now) -> GuestBalloon:
    return await run(request, core.balloon, _domain_id(principal), now)


@router.put(
    "/balloon",
    response_model=GuestBalloon,
    responses=responses(401, 403, 409, 422),
    summary="The balloon driver reports each pool's actual size",
)
async def report(
    body: BalloonReport, request: Request, settings: SettingsDep, principal: Guest, now: Now
) -> GuestBalloon:
    return await run_operation(
        request, core.report, _domain_id(principal), body, settings, now, principal.actor
    )
