"""The cluster: block size, overview totals, and (with the engine) the worst-case template."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import func, select

from service.api.auth import Admin
from service.api.deps import SessionDep
from service.api.problems import Conflict, InvalidInput, NotFound, responses
from service.core.squeezing import derive_template
from service.db.audit import record_event
from service.db.hosts import pnode_totals
from service.db.models import ClusterSettings, Domain, Host
from service.schemas.cluster import ClusterOut, ClusterPut
from service.schemas.squeeze import WorstCaseTemplateOut

router = APIRouter(prefix="/v1/cluster", tags=["cluster"])


def cluster_row(session: SessionDep, *, lock: bool = False) -> ClusterSettings:
    stmt = select(ClusterSettings).where(ClusterSettings.id == 1)
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalars(stmt).first()
    if row is None:  # the first migration inserts it; only a hand-edited database lacks it
        raise Conflict("cluster settings are missing; run the migrations")
    return row


def _overview(session: SessionDep, row: ClusterSettings) -> ClusterOut:
    by_state = dict.fromkeys(("active", "maintenance", "offline"), 0)
    for state, n in session.execute(select(Host.state, func.count()).group_by(Host.state)).all():
        by_state[state] = int(n)
    n_domains = int(session.scalar(select(func.count()).select_from(Domain)) or 0)
    cap, alloc, claimed = pnode_totals(session)
    return ClusterOut(
        block_mib=row.block_mib,
        worst_case_template=row.worst_case_template,
        hosts=sum(by_state.values()),
        domains=n_domains,
        hosts_by_state=by_state,
        capacity_mib=cap,
        allocated_mib=alloc,
        claimed_mib=claimed,
        free_mib=cap - alloc - claimed,
        version=row.version,
    )


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
    row = cluster_row(session)
    if row.worst_case_template is None:
        raise NotFound("no template yet; POST /v1/cluster/worst-case-template derives one")
    return WorstCaseTemplateOut.model_validate(row.worst_case_template)


@router.get("", response_model=ClusterOut, responses=responses(401, 403))
def get_cluster(session: SessionDep, _: Admin) -> ClusterOut:
    return _overview(session, cluster_row(session))


@router.put("", response_model=ClusterOut, responses=responses(401, 403, 409, 422))
def put_cluster(body: ClusterPut, session: SessionDep, principal: Admin) -> ClusterOut:
    if body.block_mib & (body.block_mib - 1):
        raise InvalidInput(
            f"block_mib must be a power of two, got {body.block_mib}",
            errors=[{"loc": ["body", "block_mib"], "msg": "must be a power of two"}],
        )
    row = cluster_row(session, lock=True)
    if body.block_mib != row.block_mib and session.scalar(select(func.count()).select_from(Domain)):
        raise Conflict("block_mib can only change while no domain exists")
    before = row.block_mib
    if body.block_mib != before:
        row.block_mib = body.block_mib
        record_event(
            session,
            principal.actor,
            "cluster.block_changed",
            "cluster",
            None,
            before={"block_mib": before},
            after={"block_mib": body.block_mib},
        )
        session.flush()
    out = _overview(session, row)
    session.commit()
    return out
