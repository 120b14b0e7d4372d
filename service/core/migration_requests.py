"""The migration routes' operations: plan, start, list, read, advance, abort, each answering with
its response; and `drive_on`, which moves migrations on after whatever unblocked them committed.

Each is one unit of work (`service.core.unit`) but a start: it sweeps lapsed claims first, in
transactions of their own (they lock other hosts than the start's, and one transaction taking
both sets could deadlock with another), creates in its unit (once per Idempotency-Key), and
with `auto_advance` drives the new migration on after that commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from service.core import idempotent, unit
from service.core import migrations as core
from service.core.migration_plans import compute_plan, plan_out
from service.core.migration_views import claims_of, migration_out
from service.core.sweeper import sweep_migrations
from service.db.models import Migration
from service.db.pagination import fetch_page, next_cursor
from service.schemas.common import Page
from service.schemas.migrations import MigrationOut, MigrationRequest, PlanOut, RunsOn
from service.settings import Settings
from service.vocabulary import MigrationState


def _out(session: Session, migration: Migration, now: datetime, settings: Settings) -> MigrationOut:
    claims = claims_of(session, [migration.id], now)[migration.id]
    return migration_out(migration, claims, now, settings)


def plan(session: Session, body: MigrationRequest) -> PlanOut:
    """A dry run: mapping, pool levels, ordered steps. Nothing is reserved; the unit rolls back."""
    unit.discard(session)
    domain, src, dst, engine_plan = compute_plan(session, body, lock=False)
    return plan_out(domain, src, dst, engine_plan)


def start(
    db: unit.Database,
    create: idempotent.CreateRequest,
    body: MigrationRequest,
    actor: str,
    settings: Settings,
    now: datetime,
    shape: Callable[[MigrationOut], idempotent.Reply],
) -> idempotent.Outcome:
    """Sweep, then claim the destination's memory per pnode atomically (or 409), once per
    Idempotency-Key; `shape` makes the reply. With `auto_advance`, planned -> preparing (and
    on, while no step blocks) right away, after the create committed: the orchestrator
    watches GET /v1/events?subject_id=<id>&wait=..."""
    sweep_migrations(db.write_factory, now, settings)

    def make(session: Session) -> idempotent.Reply:
        migration = core.start(session, body, actor, settings, now)
        return shape(_out(session, migration, now, settings))

    outcome = unit.write(db, lambda session: idempotent.create(session, create, make))
    if body.auto_advance and outcome.reply.status_code == 201:
        drive_on(db, [outcome.reply.body["id"]], settings, now)
    return outcome


def list_page(
    session: Session,
    cursor: str | None,
    limit: int,
    now: datetime,
    settings: Settings,
    *,
    domain_id: str | None,
    state: MigrationState | None,
) -> Page[MigrationOut]:
    """A page of migrations with their steps and live claims: three statements."""
    stmt = select(Migration).options(selectinload(Migration.steps))
    if domain_id is not None:
        stmt = stmt.where(Migration.domain_id == domain_id)
    if state is not None:
        stmt = stmt.where(Migration.state == state)
    page, more = fetch_page(session, stmt, Migration.created_at, Migration.id, cursor, limit)
    claims = claims_of(session, [m.id for m in page], now)
    return Page[MigrationOut](
        items=[migration_out(m, claims[m.id], now, settings) for m in page],
        next_cursor=next_cursor(page, more),
    )


def read(session: Session, migration_id: str, now: datetime, settings: Settings) -> MigrationOut:
    return _out(session, core.load_migration(session, migration_id), now, settings)


def advance(
    session: Session, migration_id: str, actor: str, settings: Settings, now: datetime
) -> MigrationOut:
    """The next phase, once the current phase's steps are acknowledged."""
    migration = core.advance(session, migration_id, actor, settings, now)
    return _out(session, migration, now, settings)


def abort(
    session: Session,
    migration_id: str,
    actor: str,
    settings: Settings,
    now: datetime,
    runs_on: RunsOn | None,
) -> MigrationOut:
    """Release the claims and restore the source pools, or record where the domain runs."""
    migration = core.abort(session, migration_id, actor, now, runs_on)
    return _out(session, migration, now, settings)


def drive_on(
    db: unit.Database, migration_ids: Iterable[str], settings: Settings, now: datetime
) -> None:
    """Drive each migration on as far as its acknowledged steps allow (`migrations.drive`: each
    phase committed on its own), after the unit that unblocked them committed."""
    ids = sorted(migration_ids)
    if ids:
        unit.several(db, lambda session: [core.drive(session, m, settings, now) for m in ids])
