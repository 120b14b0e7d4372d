"""A migration as its readers see it: the API's view at `now`, its live claims, and the
destinations the agent's migrate steps need (one statement each, however many migrations)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.core.migration_rules import M, lease_expired, stuck_reason
from service.db.accounting import live_claim
from service.db.models import Claim, Host, Migration
from service.schemas.agent import StepDestination
from service.schemas.migrations import (
    ClaimOut,
    MigrationOut,
    MigrationStepOut,
    PlanOut,
)
from service.settings import Settings


def migration_out(
    migration: Migration, claims: list[ClaimOut], now: datetime, settings: Settings
) -> MigrationOut:
    """The migration as of `now`: a lapsed lease shows as failed before the sweeper writes it."""
    plan = {k: v for k, v in migration.plan.items() if k != "internal"}
    state, reason = migration.state, migration.reason
    if lease_expired(migration, now):
        state, reason, claims = M.FAILED, "claims expired", []
    stuck = stuck_reason(migration, now, settings)
    return MigrationOut(
        id=migration.id,
        domain_id=migration.domain_id,
        state=state,
        strategy=migration.strategy,
        source_host_id=migration.source_host_id,
        destination_host_id=migration.destination_host_id,
        plan=PlanOut.model_validate(plan),
        claims=claims,
        steps=[MigrationStepOut.model_validate(s, from_attributes=True) for s in migration.steps],
        reason=reason,
        stuck=stuck is not None,
        stuck_reason=stuck,
        progress_at=migration.progress_at,
        auto_advance=migration.auto_advance,
        expires_at=migration.expires_at,
        version=migration.version,
        created_at=migration.created_at,
        updated_at=migration.updated_at,
    )


def claims_of(
    session: Session, migration_ids: Sequence[str], now: datetime
) -> dict[str, list[ClaimOut]]:
    """The claims of some migrations live at `now`, by migration id, in one statement."""
    out: dict[str, list[ClaimOut]] = {m: [] for m in migration_ids}
    rows = session.scalars(
        select(Claim)
        .where(Claim.migration_id.in_(list(out)), live_claim(now))
        .order_by(Claim.pnode)
    ).all()
    for c in rows:
        if c.migration_id is None:  # not selected: the WHERE names migrations
            continue
        out[c.migration_id].append(
            ClaimOut(host_id=c.host_id, pnode=c.pnode, mib=c.mib, expires_at=c.expires_at)
        )
    return out


def migrate_destinations(
    session: Session, migration_ids: Sequence[str | None]
) -> dict[str, StepDestination]:
    """For the agent's migrate steps: each migration's destination host and, per vnode, the
    destination pnodes that back it (one statement, however many steps)."""
    ids = sorted({m for m in migration_ids if m is not None})
    if not ids:
        return {}
    rows = session.execute(
        select(Migration.id, Migration.plan, Host.id, Host.name)
        .join(Host, Host.id == Migration.destination_host_id)
        .where(Migration.id.in_(ids))
    ).all()
    out = {}
    for mid, plan, host_id, host_name in rows:
        after = plan.get("backing_after") or []
        nodesets = [[p for p, mib in enumerate(row) if mib > 0] for row in after]
        homes = plan.get("mapping_after") or []
        nodesets = [ns or [int(homes[v])] for v, ns in enumerate(nodesets)]
        out[mid] = StepDestination(host_id=host_id, host_name=host_name, nodesets=nodesets)
    return out
