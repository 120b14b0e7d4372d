"""What a guest's balloon driver reports, recorded under its host's lock."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from service.core.balloon import complete_pool_steps, observe
from service.core.domains import lock_domain_host
from service.db.apply import apply
from service.db.models import Domain
from service.errors import InvalidInput
from service.schemas.guest import BalloonReport


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
    apply(session, state, changes)
    moved_on = complete_pool_steps(session, {domain.id: reported}, now)
    session.flush()
    return domain, moved_on


def _check_pools(domain: Domain, body: BalloonReport) -> None:
    k = len(domain.vnodes)
    seen: set[int] = set()
    errors = []
    for i, pool in enumerate(body.vnodes):
        if pool.index >= k:
            errors.append({"loc": ["body", "vnodes", i, "index"], "msg": f"no vnode {pool.index}"})
        if pool.index in seen:
            errors.append({"loc": ["body", "vnodes", i, "index"], "msg": "reported twice"})
        seen.add(pool.index)
    if errors:
        raise InvalidInput("the report names pools this guest does not have", errors=errors)
