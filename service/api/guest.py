"""The guest API: a domain's own virtual view, and its balloon driver's reports.

The guest token identifies the domain; no route takes an id, so a guest cannot name anything but
itself. Responses are built only from `service.schemas.guest` types.
"""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from service.api.auth import Guest
from service.api.deps import Now, SessionDep, SettingsDep
from service.api.problems import NotFound, responses
from service.core.domains import load_domain
from service.core.guests import guest_report
from service.core.migrations import drive
from service.core.views import memranges
from service.db.models import Domain, Step
from service.db.retry import retry_transaction
from service.db.steps import pending_guest_op
from service.schemas.guest import (
    BalloonReport,
    GuestBalloon,
    GuestMemRange,
    GuestOperation,
    GuestPool,
    GuestTopology,
    GuestVnode,
)

router = APIRouter(prefix="/v1/guest", tags=["guest"])


def _own_domain(session: SessionDep, principal: Guest) -> Domain:
    assert principal.subject_id is not None
    try:
        return load_domain(session, principal.subject_id)
    except NotFound:
        raise NotFound("this guest's domain no longer exists") from None


@router.get("/topology", response_model=GuestTopology, responses=responses(401, 403))
def topology(session: SessionDep, principal: Guest) -> GuestTopology:
    domain = _own_domain(session, principal)
    ranges = memranges([vn.size_mib for vn in domain.vnodes])
    return GuestTopology(
        block_mib=domain.block_mib,
        vnodes=[
            GuestVnode(
                index=vn.index,
                size_mib=vn.size_mib,
                vcpus=vn.vcpus,
                distances=domain.distances[vn.index],
                memranges=[
                    GuestMemRange(start_pfn=ranges[vn.index][0], end_pfn=ranges[vn.index][1])
                ],
            )
            for vn in domain.vnodes
        ],
    )


def _balloon_view(session: SessionDep, domain: Domain) -> GuestBalloon:
    steps = session.scalars(
        select(Step).where(Step.domain_id == domain.id, pending_guest_op()).order_by(Step.seq)
    ).all()
    return GuestBalloon(
        target_mib=domain.target_mib,
        vnodes=[
            GuestPool(
                index=vn.index,
                target_mib=vn.target_mib,
                actual_mib=vn.actual_mib,
                plugged_blocks=-(-vn.target_mib // domain.block_mib),
            )
            for vn in domain.vnodes
        ],
        pending=[
            GuestOperation(
                op=s.op,
                vnode=s.vnode if s.vnode is not None else 0,
                mib=s.mib,
                pfn_ranges=s.pfn_ranges,
                target_mib=s.target_mib,
            )
            for s in steps
        ],
    )


@router.get("/balloon", response_model=GuestBalloon, responses=responses(401, 403))
def balloon(session: SessionDep, principal: Guest) -> GuestBalloon:
    return _balloon_view(session, _own_domain(session, principal))


@router.put(
    "/balloon",
    response_model=GuestBalloon,
    responses=responses(401, 403, 409, 422),
    summary="The balloon driver reports each pool's actual size",
)
@retry_transaction
def report(
    body: BalloonReport, session: SessionDep, settings: SettingsDep, principal: Guest, now: Now
) -> GuestBalloon:
    assert principal.subject_id is not None
    domain, moved_on = guest_report(session, principal.subject_id, body, now, principal.actor)
    out = _balloon_view(session, domain)
    session.commit()
    for migration_id in sorted(moved_on):  # pool steps this report completed may clear a gate
        drive(session, migration_id, settings, now)
    return out
