"""The guest's side: its own virtual view, and what its balloon driver reports, recorded under
its host's lock.

A guest names nothing but itself (its token names the domain), so every answer is built from
`service.schemas.guest` types only.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from service.core import unit
from service.core.balloon import complete_pool_steps, observe
from service.core.domains import load_domain, lock_domain_host
from service.core.migration_requests import drive_on
from service.core.views import memranges
from service.db.apply import apply
from service.db.models import Domain
from service.db.steps import pending_guest_steps
from service.errors import InvalidInput, NotFound
from service.schemas.guest import (
    BalloonReport,
    GuestBalloon,
    GuestMemRange,
    GuestOperation,
    GuestPool,
    GuestTopology,
    GuestVnode,
)
from service.settings import Settings


def _own_domain(session: Session, domain_id: str) -> Domain:
    try:
        return load_domain(session, domain_id)
    except NotFound:
        raise NotFound("this guest's domain no longer exists") from None


def topology(session: Session, domain_id: str) -> GuestTopology:
    """The vnodes as the guest sees them: sizes, vCPUs, distances, memory ranges."""
    domain = _own_domain(session, domain_id)
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


def _balloon_view(session: Session, domain: Domain) -> GuestBalloon:
    steps = pending_guest_steps(session, domain.id)
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


def balloon(session: Session, domain_id: str) -> GuestBalloon:
    """Targets per pool and the operations waiting on the guest's driver."""
    return _balloon_view(session, _own_domain(session, domain_id))


def report(
    db: unit.Database,
    domain_id: str,
    body: BalloonReport,
    settings: Settings,
    now: datetime,
    actor: str,
) -> GuestBalloon:
    """Record the report in its unit of work and answer with the balloon view it leaves; then
    drive on the migrations whose pool steps it completed."""

    def record(session: Session) -> tuple[GuestBalloon, set[str]]:
        domain, moved_on = guest_report(session, domain_id, body, now, actor)
        return _balloon_view(session, domain), moved_on

    out, moved_on = unit.write(db, record)
    drive_on(db, moved_on, settings, now)
    return out


def guest_report(
    session: Session, domain_id: str, body: BalloonReport, now: datetime, actor: str
) -> tuple[Domain, set[str]]:
    """Store the per-pool actual sizes (capped: see `balloon.observe`) and the counters they
    imply; pool steps the report shows done are acknowledged. Also returns the migrations whose
    steps it completed (to drive on after the commit)."""
    domain, state = lock_domain_host(session, domain_id, now)
    _check_pools(domain, body)
    reported = {p.index: p.actual_mib for p in body.vnodes}
    changes, _ = observe(domain, reported, now, actor=actor, action="domain.balloon_reported")
    apply(session, state, changes, now=now)
    moved_on = complete_pool_steps(session, {domain.id: reported}, now)
    session.flush()
    return domain, moved_on


def _check_pools(domain: Domain, body: BalloonReport) -> None:
    """Refuse, located, what no guest can hold: a pool it does not have, one reported twice, a
    size above the vnode's span (the host agents' reports are refused alike)."""
    size_of = {vn.index: vn.size_mib for vn in domain.vnodes}
    seen: set[int] = set()
    errors = []
    for i, pool in enumerate(body.vnodes):
        if pool.index not in size_of:
            errors.append({"loc": ["body", "vnodes", i, "index"], "msg": f"no vnode {pool.index}"})
        elif pool.actual_mib > size_of[pool.index]:
            errors.append(
                {
                    "loc": ["body", "vnodes", i, "actual_mib"],
                    "msg": f"above vnode {pool.index}'s size of {size_of[pool.index]} MiB",
                }
            )
        if pool.index in seen:
            errors.append({"loc": ["body", "vnodes", i, "index"], "msg": "reported twice"})
        seen.add(pool.index)
    if errors:
        raise InvalidInput("the report names pools or sizes this guest cannot have", errors=errors)
