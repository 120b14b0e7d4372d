"""Queries about steps: a host's queue and the row locks an acknowledgement takes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, or_, select, update
from sqlalchemy.orm import Session

from service.db.models import Domain, Migration, Step
from service.vocabulary import GUEST_OPS, StepState

MAX_PENDING = 1000


def pending_guest_op() -> ColumnElement[bool]:
    """A step still waiting on a guest's driver (plug, unplug, balloon): what the guest's balloon
    view lists and what a report of its pool sizes can complete."""
    return and_(Step.state == StepState.PENDING, Step.op.in_(GUEST_OPS))


def due(now: datetime) -> ColumnElement[bool]:
    """A step an agent may see now: not a retry still backing off (`not_before` ahead)."""
    return or_(Step.not_before.is_(None), Step.not_before <= now)


def pending_guest_steps(session: Session, domain_id: str, now: datetime) -> Sequence[Step]:
    """The steps waiting on a domain's balloon driver and due, in order (one statement)."""
    return session.scalars(
        select(Step)
        .where(Step.domain_id == domain_id, pending_guest_op(), due(now))
        .order_by(Step.seq)
    ).all()


def pending_steps(session: Session, host_id: str, now: datetime) -> Sequence[Step]:
    """The host's pending steps that are due, oldest first (at most MAX_PENDING, one
    statement)."""
    return session.scalars(
        select(Step)
        .where(Step.host_id == host_id, Step.state == "pending", due(now))
        .order_by(Step.created_at, Step.seq)
        .limit(MAX_PENDING)
    ).all()


def set_step_failure(
    session: Session, domain_ids: list[str], failure: dict[str, Any] | None
) -> None:
    """The domains' last step failure (status: their version does not move); None clears it
    where it is set."""
    if not domain_ids:
        return
    where: ColumnElement[bool] = Domain.id.in_(domain_ids)
    if failure is None:
        where = and_(where, Domain.step_failure.is_not(None))
    session.execute(
        update(Domain).where(where).values(step_failure=failure),
        execution_options={"synchronize_session": False},
    )


def step_migration_id(session: Session, host_id: str, step_id: str) -> Row[str | None] | None:
    """The step's migration id (a row, so a step without one is told from no step), unlocked:
    the migration is locked before the step."""
    return session.execute(
        select(Step.migration_id).where(Step.id == step_id, Step.host_id == host_id)
    ).first()


def lock_migration(session: Session, migration_id: str) -> Migration | None:
    return session.scalars(
        select(Migration).where(Migration.id == migration_id).with_for_update()
    ).first()


def lock_step(session: Session, host_id: str, step_id: str) -> Step | None:
    return session.scalars(
        select(Step).where(Step.id == step_id, Step.host_id == host_id).with_for_update()
    ).first()
