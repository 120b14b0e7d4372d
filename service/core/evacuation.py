"""Evacuate a host: maintenance first, then one migration per domain to the best other host.

Each migration is started in a transaction of its own (its claims are taken atomically, host rows
locked in id order by `migrations.start`), so one domain that fits nowhere cannot hold back the
others; it is reported with its reason instead of being skipped in silence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.core import migration_rules, migrations
from service.core.domains import load_domain, topology_of
from service.db import hosts as repo
from service.db.audit import record_event
from service.db.cluster import load_cluster
from service.db.models import Domain, Migration
from service.engine.placement import rank_cluster
from service.errors import Conflict, Infeasible, NotFound
from service.schemas.migrations import MigrationRequest, Strategy
from service.settings import Settings

MAX_DESTINATIONS = 3


@dataclass
class Evacuated:
    migration_ids: list[str] = field(default_factory=list)
    unplaced: list[tuple[str, str]] = field(default_factory=list)


def begin(session: Session, host_id: str, actor: str, now: datetime) -> None:
    """Put the host in maintenance (no new domain lands there) and mark the evacuation; commits."""
    host = repo.get_host(session, host_id, lock=True)
    if host is None:
        raise NotFound(f"no host with id {host_id}")
    before = host.state
    host.state = "maintenance"
    if host.evacuation_requested_at is None:
        host.evacuation_requested_at = now
    record_event(
        session,
        actor,
        "host.evacuation_started",
        "host",
        host.id,
        before={"state": before},
        after={"state": "maintenance"},
    )
    session.commit()


def _destinations(session: Session, domain_id: str) -> list[str]:
    """Other active hosts that can hold the domain as it is now, best first."""
    domain = load_domain(session, domain_id)
    topo = topology_of(domain)
    demand = np.array([vn.target_mib for vn in domain.vnodes], dtype=np.int64)
    view = load_cluster(session)
    if not view.ids:
        return []
    ranking = rank_cluster(
        demand_mib=demand,
        vcpu_count=topo.vcpu_count(),
        vdist=topo.distances,
        cluster=view.arrays,
        limit=MAX_DESTINATIONS + 1,
    )
    return [
        view.ids[i]
        for i in ranking.order.tolist()
        if ranking.feasible[i] and view.ids[i] != domain.host_id
    ]


def _move(
    session: Session,
    domain_id: str,
    strategy: Strategy,
    auto_advance: bool,
    actor: str,
    settings: Settings,
    now: datetime,
) -> str:
    """Start the domain's migration to the first destination that accepts it; its id, or
    raise Infeasible with every destination's reason."""
    reasons = []
    candidates = _destinations(session, domain_id)
    session.rollback()
    for dst in candidates[:MAX_DESTINATIONS]:
        body = MigrationRequest(
            domain_id=domain_id,
            destination_host_id=dst,
            strategy=strategy,
            auto_advance=auto_advance,
        )
        try:
            migration = migrations.start(session, body, actor, settings, now)
        except (Conflict, Infeasible) as exc:
            session.rollback()
            reasons.append(exc.detail)
            continue
        mid = migration.id
        session.commit()
        return mid
    if not candidates:
        raise Infeasible("no other active host has room for it")
    raise Infeasible("; ".join(reasons))


def evacuate(
    session: Session,
    host_id: str,
    strategy: Strategy,
    auto_advance: bool,
    actor: str,
    settings: Settings,
    now: datetime,
) -> Evacuated:
    begin(session, host_id, actor, now)
    out = Evacuated()
    # Largest first (first-fit decreasing): small domains fill the gaps big ones leave.
    rows = session.execute(
        select(Domain.id, Domain.state)
        .where(Domain.host_id == host_id)
        .order_by(Domain.target_mib.desc(), Domain.id)
    ).all()
    in_flight = dict(
        session.execute(
            select(Migration.domain_id, Migration.id).where(
                Migration.source_host_id == host_id, Migration.state.in_(migration_rules.ACTIVE)
            )
        ).all()
    )
    session.rollback()
    for domain_id, state in rows:
        if domain_id in in_flight:  # already leaving (an earlier evacuate, or by hand)
            out.migration_ids.append(in_flight[domain_id])
            continue
        if state != "running":
            out.unplaced.append((domain_id, f"the domain is {state}"))
            continue
        try:
            out.migration_ids.append(
                _move(session, domain_id, strategy, auto_advance, actor, settings, now)
            )
        except (Infeasible, Conflict, NotFound) as exc:
            session.rollback()
            out.unplaced.append((domain_id, exc.detail))
    if auto_advance:
        for mid in out.migration_ids:
            migrations.drive(session, mid, settings, now)
    return out
