"""The cluster: block size, overview totals, and (with the engine) the worst-case template."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.auth import Admin
from service.api.deps import SessionDep
from service.api.problems import responses
from service.core import cluster as core
from service.core.squeezing import derive_template
from service.schemas.cluster import ClusterOut, ClusterPut
from service.schemas.squeeze import WorstCaseTemplateOut

router = APIRouter(prefix="/v1/cluster", tags=["cluster"])


@router.post(
    "/worst-case-template",
    response_model=WorstCaseTemplateOut,
    responses=responses(401, 403, 409, 422),
    summary="Derive the virtual topology that can represent every host, and store it",
)
def post_template(session: SessionDep, principal: Admin) -> WorstCaseTemplateOut:
    out = derive_template(session, principal.actor)
    session.commit()
    return out


@router.get(
    "/worst-case-template",
    response_model=WorstCaseTemplateOut,
    responses=responses(401, 403, 404),
    summary="The stored worst-case template",
)
def get_template(session: SessionDep, _: Admin) -> WorstCaseTemplateOut:
    return core.stored_template(session)


@router.get("", response_model=ClusterOut, responses=responses(401, 403))
def get_cluster(session: SessionDep, _: Admin) -> ClusterOut:
    return core.overview(session)


@router.put("", response_model=ClusterOut, responses=responses(401, 403, 409, 422))
def put_cluster(body: ClusterPut, session: SessionDep, principal: Admin) -> ClusterOut:
    out = core.set_block_size(session, body, principal.actor)
    session.commit()
    return out
