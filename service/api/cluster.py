"""The cluster: block size, overview totals, and (with the engine) the worst-case template."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.api.auth import Admin
from service.api.deps import Now, run
from service.api.problems import responses
from service.core import cluster as core
from service.core import failover
from service.core.squeezing import derive_template
from service.schemas.cluster import ClusterOut, ClusterPatch, ClusterPut
from service.schemas.failover import FailoverPlanOut, FailoverPlanRequest
from service.schemas.squeeze import WorstCaseTemplateOut

router = APIRouter(prefix="/v1/cluster", tags=["cluster"])


@router.post(
    "/worst-case-template",
    response_model=WorstCaseTemplateOut,
    responses=responses(401, 403, 409, 422),
    summary="Derive the virtual topology that can represent every host, and store it",
)
async def post_template(request: Request, principal: Admin, now: Now) -> WorstCaseTemplateOut:
    return await run(request, derive_template, principal.actor, now)


@router.get(
    "/worst-case-template",
    response_model=WorstCaseTemplateOut,
    responses=responses(401, 403, 404),
    summary="The stored worst-case template",
)
async def get_template(request: Request, _: Admin) -> WorstCaseTemplateOut:
    return await run(request, core.stored_template)


@router.get("", response_model=ClusterOut, responses=responses(401, 403))
async def get_cluster(request: Request, _: Admin) -> ClusterOut:
    return await run(request, core.overview)


@router.put("", response_model=ClusterOut, responses=responses(401, 403, 409, 422))
async def put_cluster(body: ClusterPut, request: Request, principal: Admin, now: Now) -> ClusterOut:
    return await run(request, core.set_block_size, body, principal.actor, now)


@router.patch(
    "",
    response_model=ClusterOut,
    responses=responses(401, 403, 409, 422),
    summary="Change the block size or failover protection (`ha`; null turns it off)",
)
async def patch_cluster(
    body: ClusterPatch, request: Request, principal: Admin, now: Now
) -> ClusterOut:
    return await run(request, core.patch_cluster, body, principal.actor, now)


@router.post(
    "/failover-plan",
    response_model=FailoverPlanOut,
    responses=responses(401, 403, 422),
    summary="Can every protected domain restart, with its vnodes, after any r host failures?",
)
async def failover_plan(body: FailoverPlanRequest, request: Request, _: Admin) -> FailoverPlanOut:
    return await run(request, failover.plan, body)
