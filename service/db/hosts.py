"""Queries about hosts. Each function issues a fixed number of statements, whatever the size."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, exists, func, select
from sqlalchemy.orm import Session, selectinload

from service.db.filters import filtered
from service.db.models import Claim, Domain, Host, Migration, Pnode
from service.db.pagination import fetch_page
from service.vocabulary import ACTIVE_MIGRATION_STATES


def get_host(session: Session, host_id: str, *, lock: bool = False) -> Host | None:
    stmt = select(Host).where(Host.id == host_id).options(selectinload(Host.pnodes))
    if lock:
        stmt = stmt.with_for_update(of=Host)
    return session.scalars(stmt).first()


def list_hosts(
    session: Session,
    cursor: str | None,
    limit: int,
    *,
    name: str | None = None,
    external_id: str | None = None,
    labels: Sequence[tuple[str, str]] = (),
) -> tuple[Sequence[Host], bool]:
    stmt = filtered(
        select(Host).options(selectinload(Host.pnodes)),
        Host,
        name=name,
        external_id=external_id,
        labels=labels,
    )
    return fetch_page(session, stmt, Host.created_at, Host.id, cursor, limit)


def get_host_by_name(session: Session, name: str) -> Host | None:
    return session.scalars(
        select(Host).where(Host.name == name).options(selectinload(Host.pnodes))
    ).first()


def external_id_taken(external_id: str, other_than: str | None = None) -> Select[tuple[bool]]:
    cond = Host.external_id == external_id
    if other_than is not None:
        cond = cond & (Host.id != other_than)
    return select(exists().where(cond))


def evacuation_counts(session: Session, host_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Domains still on each host and migrations off it still in flight (two statements)."""
    if not host_ids:
        return {}
    domains = dict(
        session.execute(
            select(Domain.host_id, func.count())
            .where(Domain.host_id.in_(host_ids))
            .group_by(Domain.host_id)
        ).all()
    )
    moving = dict(
        session.execute(
            select(Migration.source_host_id, func.count())
            .where(
                Migration.source_host_id.in_(host_ids),
                Migration.state.in_(ACTIVE_MIGRATION_STATES),
            )
            .group_by(Migration.source_host_id)
        ).all()
    )
    return {h: (int(domains.get(h, 0)), int(moving.get(h, 0))) for h in host_ids}


def host_usage_reason(session: Session, host_id: str) -> str | None:
    """Why the host cannot be deleted, or None when nothing references it."""
    domains, claims, migrations = session.execute(
        select(
            select(func.count())
            .select_from(Domain)
            .where(Domain.host_id == host_id)
            .scalar_subquery(),
            select(func.count())
            .select_from(Claim)
            .where(Claim.host_id == host_id)
            .scalar_subquery(),
            exists().where(
                (Migration.source_host_id == host_id) | (Migration.destination_host_id == host_id),
                Migration.state.in_(ACTIVE_MIGRATION_STATES),
            ),
        )
    ).one()
    if domains:
        return f"{domains} domain(s) run on this host; migrate or delete them first"
    if claims:
        return f"{claims} claim(s) reserve memory on this host; wait for them or abort"
    if migrations:
        return "a migration in flight uses this host; let it finish or abort it"
    return None


def pnode_totals(session: Session) -> tuple[int, int, int]:
    cap, alloc, claimed = session.execute(
        select(
            func.coalesce(func.sum(Pnode.memory_mib - Pnode.reserved_mib), 0),
            func.coalesce(func.sum(Pnode.allocated_mib), 0),
            func.coalesce(func.sum(Pnode.claimed_mib), 0),
        )
    ).one()
    return int(cap), int(alloc), int(claimed)


def name_taken(name: str) -> Select[tuple[bool]]:
    return select(exists().where(Host.name == name))


def migrations_with_steps(session: Session, migration_ids: Sequence[str]) -> dict[str, Migration]:
    """Migrations (an evacuation's) by id, each with its steps: two statements."""
    found = session.scalars(
        select(Migration)
        .where(Migration.id.in_(migration_ids))
        .options(selectinload(Migration.steps))
    ).all()
    return {m.id: m for m in found}
