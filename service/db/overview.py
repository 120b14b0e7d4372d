"""The whole cluster at a glance, for the topology view: hosts with their pnodes, domains with
their vnodes, backing and live claims per pnode, and the migrations worth showing.

A fixed number of statements (seven at most), whatever the size of the cluster: the page costs
the same round trips for 3 hosts as for 64.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from service.db.accounting import live_claim
from service.db.models import Backing, Claim, Domain, Host, Migration, Step
from service.vocabulary import ACTIVE_MIGRATION_STATES


@dataclass
class Overview:
    hosts: list[Host]
    domains: list[Domain]
    backing: dict[tuple[str, int], dict[str, int]]  # (host, pnode) -> domain -> MiB
    claims: dict[tuple[str, int], int]
    migrations: list[Migration]
    steps: dict[str, tuple[int, int]]  # migration -> (acked, total)


def _backing(session: Session) -> dict[tuple[str, int], dict[str, int]]:
    backing: dict[tuple[str, int], dict[str, int]] = defaultdict(dict)
    for host_id, pnode, domain_id, mib in session.execute(
        select(Backing.host_id, Backing.pnode, Backing.domain_id, func.sum(Backing.mib)).group_by(
            Backing.host_id, Backing.pnode, Backing.domain_id
        )
    ).all():
        backing[(host_id, pnode)][domain_id] = int(mib)
    return dict(backing)


def _claims(session: Session, now: datetime) -> dict[tuple[str, int], int]:
    return {
        (h, p): int(m)
        for h, p, m in session.execute(
            select(Claim.host_id, Claim.pnode, func.sum(Claim.mib))
            .where(live_claim(now))
            .group_by(Claim.host_id, Claim.pnode)
        ).all()
    }


def _migrations(session: Session, recent: int) -> list[Migration]:
    """Those in flight, oldest first, then the `recent` latest to have ended."""
    active = list(
        session.scalars(
            select(Migration)
            .where(Migration.state.in_(ACTIVE_MIGRATION_STATES))
            .order_by(Migration.created_at)
        ).all()
    )
    ended = list(
        session.scalars(
            select(Migration)
            .where(Migration.state.not_in(ACTIVE_MIGRATION_STATES))
            .order_by(Migration.updated_at.desc())
            .limit(recent)
        ).all()
    )
    return active + ended


def _step_progress(session: Session, migrations: Sequence[Migration]) -> dict[str, tuple[int, int]]:
    """(acked, total) steps of each migration; no statement when there is none."""
    steps: dict[str, tuple[int, int]] = {}
    if not migrations:
        return steps
    for mid, state, n in session.execute(
        select(Step.migration_id, Step.state, func.count())
        .where(Step.migration_id.in_([m.id for m in migrations]))
        .group_by(Step.migration_id, Step.state)
    ).all():
        if mid is None:
            continue
        acked, total = steps.get(mid, (0, 0))
        steps[mid] = (acked + (n if state == "acked" else 0), total + int(n))
    return steps


def load_overview(
    session: Session, *, max_hosts: int, recent_migrations: int, now: datetime
) -> Overview:
    """The first `max_hosts` hosts, every domain, and the migrations in flight then the
    `recent_migrations` latest ended ones."""
    hosts = list(
        session.scalars(
            select(Host)
            .options(selectinload(Host.pnodes))
            .order_by(Host.created_at)
            .limit(max_hosts)
        ).all()
    )
    domains = list(
        session.scalars(
            select(Domain).options(selectinload(Domain.vnodes)).order_by(Domain.created_at)
        ).all()
    )
    backing = _backing(session)
    claims = _claims(session, now)
    migrations = _migrations(session, recent_migrations)
    steps = _step_progress(session, migrations)
    return Overview(
        hosts=hosts,
        domains=domains,
        backing=backing,
        claims=claims,
        migrations=migrations,
        steps=steps,
    )
