"""Migrations between NUMA topologies: plan, claim, advance through the phases, abort, expire.

State machine: planned -> preparing -> migrating -> settling -> completed, or aborted / failed.
Every transition is one transaction that locks both hosts (in id order, so two migrations never
deadlock), so a server killed at any point leaves a state from which `advance` or `abort` goes on,
and claims can only leak until their expiry.

Accounting through the phases:
- create: destination claims (per pnode, covering every intermediate destination state).
- preparing: the guest's pools are asked down to the carried levels; the source keeps the full
  backing reserved so an abort can always restore it.
- migrating -> settling (the migrate step is acknowledged): the domain now runs on the
  destination; its backing there is the final one, the claims shrink to the surplus the guest
  may still hold during settle, and the source memory is released.
- completed: the remaining claims are released.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from service.core.balloon import pool_change_rows
from service.core.domains import topology_of
from service.core.migration_plans import compute_plan, grow_flags, host_states, plan_out
from service.core.migration_rules import (
    ABORTABLE,
    NEXT,
    M,
    abort_outcome,
    lease_expired,
    next_state,
    stuck_reason,
)
from service.db.accounting import HostAccounting
from service.db.apply import apply
from service.db.audit import record_event
from service.db.changes import ChangeSet, NewTarget, Row, claim_row, step_row
from service.db.models import Domain, Migration, Step
from service.errors import Conflict, NotFound
from service.schemas.migrations import (
    MigrationRequest,
    RunsOn,
)
from service.settings import Settings
from service.vocabulary import (
    DomainState,
    StepState,
)

I64 = NDArray[np.int64]


def start(
    session: Session, body: MigrationRequest, actor: str, settings: Settings, now: datetime
) -> Migration:
    domain, src, dst, plan = compute_plan(session, body, lock=True, now=now)
    if not plan.feasible:
        raise Conflict(f"the migration cannot be done: {plan.reason}", plan=None)
    expires = now + timedelta(seconds=settings.claim_ttl_s)
    out = plan_out(domain, src, dst, plan)
    stored: dict[str, Any] = out.model_dump(mode="json")
    stored["internal"] = {
        "carried_mib": plan.carried_mib.tolist(),
        "backing_carried_mib": plan.backing_carried_mib.tolist(),
        "target_before_mib": plan.target_before_mib,
    }
    host_of = {"source": src.host.id, "destination": dst.host.id}
    steps = [
        Step(
            **step_row(
                domain_id=domain.id,
                host_id=host_of[s.host],
                seq=s.seq,
                phase=s.phase,
                op=s.op,
                vnode=s.vnode,
                pnode=s.pnode,
                mib=s.mib,
                pfn_ranges=[list(r) for r in s.pfn_ranges],
                target_mib=s.target_mib,
                grow=grow,
                state=StepState.ACKED if s.phase == "claim" else StepState.WAITING,
                detail="claimed by the service" if s.phase == "claim" else None,
                acked_at=now if s.phase == "claim" else None,
                created_at=now,
            )
        )
        for s, grow in zip(plan.steps, grow_flags(plan), strict=True)
    ]
    migration = Migration(
        domain_id=domain.id,
        source_host_id=src.host.id,
        destination_host_id=dst.host.id,
        strategy=plan.strategy,
        state=M.PLANNED,
        plan=stored,
        auto_advance=body.auto_advance,
        expires_at=expires,
        progress_at=now,
        created_at=now,
        steps=steps,
    )
    session.add(migration)
    session.flush()
    domain.state = DomainState.MIGRATING
    claims = _claim_rows(migration, dst.host.id, domain.id, plan.claims_mib, now)
    apply(session, dst, ChangeSet(claims=claims), now=now)
    record_event(
        session,
        actor,
        "migration.created",
        "migration",
        migration.id,
        after={
            "domain_id": domain.id,
            "source_host_id": src.host.id,
            "destination_host_id": dst.host.id,
            "strategy": plan.strategy,
            "claims_mib": plan.claims_mib.tolist(),
            "moved_mib": plan.moved_mib,
        },
    )
    session.flush()
    return migration


def _claim_rows(
    migration: Migration, host_id: str, domain_id: str, claims_mib: I64, now: datetime
) -> list[Row]:
    """One claim row per destination pnode with memory to reserve, expiring with the migration."""
    return [
        claim_row(
            host_id=host_id,
            pnode=pnode,
            mib=int(mib),
            domain_id=domain_id,
            migration_id=migration.id,
            expires_at=migration.expires_at,
            created_at=now,
        )
        for pnode, mib in enumerate(claims_mib.tolist())
        if mib > 0
    ]


def load_migration(session: Session, migration_id: str, *, lock: bool = False) -> Migration:
    stmt = (
        select(Migration).where(Migration.id == migration_id).options(selectinload(Migration.steps))
    )
    if lock:
        stmt = stmt.with_for_update(of=Migration)
    migration = session.scalars(stmt).first()
    if migration is None:
        raise NotFound(f"no migration with id {migration_id}")
    return migration


def _locked(
    session: Session, migration_id: str, now: datetime | None = None
) -> tuple[Migration, HostAccounting, HostAccounting, Domain]:
    """Lock the migration's hosts first (global order), then read the migration under them."""
    ids = session.execute(
        select(Migration.source_host_id, Migration.destination_host_id).where(
            Migration.id == migration_id
        )
    ).first()
    if ids is None:
        raise NotFound(f"no migration with id {migration_id}")
    if ids[0] is None or ids[1] is None:
        raise Conflict("a host of this migration was removed")
    src, dst = host_states(session, ids[0], ids[1], lock=True, now=now)
    migration = load_migration(session, migration_id, lock=True)
    domain = src.domain(migration.domain_id) or dst.domain(migration.domain_id)
    if domain is None:
        raise Conflict("the migrating domain is gone")
    return migration, src, dst, domain


def _set_phase_steps(migration: Migration, phases: Sequence[str], state: str) -> None:
    for step in migration.steps:
        if step.phase in phases and step.state == StepState.WAITING:
            step.state = state


def advance(
    session: Session, migration_id: str, actor: str, settings: Settings, now: datetime
) -> Migration:
    migration, src, dst, domain = _locked(session, migration_id, now)
    if lease_expired(migration, now):
        _fail(session, migration, src, dst, domain, actor, now, "claims expired")
        return migration
    before = migration.state
    target = next_state(migration, {h.host.id: h.host.name for h in (src, dst)})
    internal = migration.plan["internal"]
    if target == M.PREPARING:
        apply(session, src, _carry(domain, internal["carried_mib"]), now=now)
        _set_phase_steps(migration, ["prepare"], StepState.PENDING)
    elif target == M.MIGRATING:
        _set_phase_steps(migration, ["migrate"], StepState.PENDING)
    elif target == M.SETTLING:
        _switch_host(session, migration, src, dst, domain, now)
        _set_phase_steps(migration, ["settle", "release"], StepState.PENDING)
    else:
        domain.state = DomainState.RUNNING
        apply(session, dst, ChangeSet(released_claims=[migration.id]), now=now)
    migration.state = target
    if before == M.PLANNED:
        # From here on the guest may be copying into the claimed memory: no clock frees it.
        migration.expires_at = None
        apply(session, dst, ChangeSet(held_claims=[migration.id]), now=now)
    mark_progress(session, migration, now, actor)
    record_event(
        session,
        actor,
        "migration.advanced",
        "migration",
        migration.id,
        before={"state": before},
        after={"state": target},
    )
    session.flush()
    return migration


def _carry(domain: Domain, levels: Sequence[int]) -> ChangeSet:
    """The pools' levels while the domain moves (what the guest carries across)."""
    carried = [int(t) for t in levels]
    total = NewTarget(domain=domain, target_mib=sum(carried), set_at=domain.target_set_at)
    return ChangeSet(pool_targets={domain.id: carried}, targets=[total])


def _switch_host(
    session: Session,
    migration: Migration,
    src: HostAccounting,
    dst: HostAccounting,
    domain: Domain,
    now: datetime,
) -> None:
    """The migrate step is done: the domain runs on the destination from now on."""
    plan = migration.plan
    after = np.array(plan["backing_after"], dtype=np.int64)
    claims = np.array(plan["claims_mib"], dtype=np.int64)
    spare = np.maximum(claims - after.sum(axis=0), 0)
    src.domains.remove(domain)
    src.backing.pop(domain.id, None)
    domain.host_id = dst.host.id
    for vn, home in zip(domain.vnodes, plan["mapping_after"], strict=True):
        vn.home_pnode = int(home)
    dst.domains.append(domain)
    apply(session, src, ChangeSet(), now=now)  # the domain's memory left the source
    arrived = ChangeSet(
        backing={domain.id: after},
        # the claims shrink to the surplus the guest may still hold while it settles
        released_claims=[migration.id],
        claims=_claim_rows(migration, dst.host.id, domain.id, spare, now),
        # re-reported on the new host; never trusted above the target meanwhile
        actual_mib={domain.id: {vn.index: None for vn in domain.vnodes}},
        targets=[
            NewTarget(domain=domain, target_mib=int(after.sum()), set_at=domain.target_set_at)
        ],
    )
    apply(session, dst, arrived, now=now)


def mark_progress(session: Session, migration: Migration, now: datetime, actor: str) -> None:
    """The migration moved (advanced, a step acknowledged): it is not stuck."""
    migration.progress_at = now
    if migration.stuck_at is not None:
        migration.stuck_at = None
        record_event(
            session, actor, "migration.progressing", "migration", migration.id,
            after={"state": migration.state},
        )  # fmt: skip


def abort(
    session: Session,
    migration_id: str,
    actor: str,
    now: datetime,
    runs_on: RunsOn | None = None,
) -> Migration:
    migration, src, dst, domain = _locked(session, migration_id, now)
    if abort_outcome(migration, runs_on) == "moved":
        return _moved_anyway(session, migration, src, dst, domain, actor, now)
    _rollback(session, migration, src, dst, domain, now)
    before = migration.state
    migration.state = M.ABORTED
    migration.reason = "aborted by the toolstack"
    record_event(
        session,
        actor,
        "migration.aborted",
        "migration",
        migration.id,
        before={"state": before},
        after={"state": "aborted"},
    )
    session.flush()
    return migration


def _moved_anyway(
    session: Session,
    migration: Migration,
    src: HostAccounting,
    dst: HostAccounting,
    domain: Domain,
    actor: str,
    now: datetime,
) -> Migration:
    """Abort asked after the domain moved: record the truth (it runs on the destination) and
    let the migration settle there; rolling back to the source would give away live memory."""
    _switch_host(session, migration, src, dst, domain, now)
    for step in migration.steps:
        if step.phase == "migrate" and step.state != StepState.ACKED:
            step.state, step.detail, step.acked_at = (
                StepState.ACKED,
                f"resolved by {actor}: moved",
                now,
            )
    _set_phase_steps(migration, ["settle", "release"], StepState.PENDING)
    migration.state = M.SETTLING
    migration.reason = "abort requested after the domain moved: settling on the destination"
    mark_progress(session, migration, now, actor)
    record_event(
        session, actor, "migration.advanced", "migration", migration.id,
        before={"state": "migrating"}, after={"state": "settling", "reason": migration.reason},
    )  # fmt: skip
    session.flush()
    return migration


def _rollback(
    session: Session,
    migration: Migration,
    src: HostAccounting,
    dst: HostAccounting,
    domain: Domain,
    now: datetime,
) -> None:
    """Release the claims, cancel the steps, and ask the guest's pools back to their levels."""
    for step in migration.steps:
        if step.state in (StepState.WAITING, StepState.PENDING):
            step.state = StepState.CANCELLED
            step.detail = "migration ended"
    carried = np.array([vn.target_mib for vn in domain.vnodes], dtype=np.int64)
    x_src = src.backing[domain.id]
    domain.state = DomainState.RUNNING
    homes = [vn.home_pnode or 0 for vn in domain.vnodes]
    steps = pool_change_rows(
        domain.id, src.host.id, topology_of(domain), carried, x_src.sum(axis=1), homes, now
    )
    apply(session, dst, ChangeSet(released_claims=[migration.id]), now=now)
    restored = NewTarget(domain=domain, target_mib=int(x_src.sum()), set_at=domain.target_set_at)
    back = ChangeSet(backing={domain.id: x_src}, targets=[restored], pool_steps={domain.id: steps})
    apply(session, src, back, now=now)


def _fail(
    session: Session,
    migration: Migration,
    src: HostAccounting,
    dst: HostAccounting,
    domain: Domain,
    actor: str,
    now: datetime,
    reason: str,
) -> None:
    before = migration.state
    _rollback(session, migration, src, dst, domain, now)
    migration.state = M.FAILED
    migration.reason = reason
    record_event(
        session,
        actor,
        "migration.failed",
        "migration",
        migration.id,
        before={"state": before},
        after={"state": "failed", "reason": reason},
    )
    session.flush()


def expired_migration_ids(session: Session, now: datetime, limit: int = 20) -> list[str]:
    """`planned` migrations whose claims' lease ran out, oldest first."""
    return list(
        session.scalars(
            select(Migration.id)
            .where(Migration.state == M.PLANNED, Migration.expires_at <= now)
            .order_by(Migration.expires_at)
            .limit(limit)
        ).all()
    )


def expire_migration(session: Session, migration_id: str, now: datetime, actor: str) -> bool:
    """Fail one `planned` migration whose lease ran out (locks its two hosts, in id order).

    One per transaction: a transaction that locked a second pair of hosts after a first could
    deadlock with one locking them the other way round."""
    migration, src, dst, domain = _locked(session, migration_id, now)
    if not lease_expired(migration, now):
        return False
    _fail(session, migration, src, dst, domain, actor, now, "claims expired")
    return True


def flag_stuck(session: Session, now: datetime, settings: Settings, actor: str) -> int:
    """Flag, once and with an event, each migration that stopped progressing (no host locks)."""
    cutoff = now - timedelta(seconds=settings.stuck_after_s)
    rows = session.scalars(
        select(Migration)
        .where(
            Migration.state.in_((M.PREPARING, M.MIGRATING, M.SETTLING)),
            Migration.progress_at <= cutoff,
            Migration.stuck_at.is_(None),
        )
        .options(selectinload(Migration.steps))
        .limit(50)
        .with_for_update(of=Migration, skip_locked=True)
    ).all()
    for migration in rows:
        migration.stuck_at = now
        record_event(
            session, actor, "migration.stuck", "migration", migration.id,
            after={"state": migration.state, "reason": stuck_reason(migration, now, settings)},
        )  # fmt: skip
    session.flush()
    return len(rows)


SERVICE_ACTOR = "service"


def drive(session: Session, migration_id: str, settings: Settings, now: datetime) -> str | None:
    """Advance an `auto_advance` migration as far as its acknowledged steps allow, each phase in
    a transaction of its own (committed here); returns the state it is left in.

    Called after whatever can complete a step commits (an agent ack, a guest report) and after a
    migration is created, so an orchestrator only watches. A gate that is not clear yet, or a
    concurrent advance that won, ends the drive without error."""
    session.expire_all()  # whatever the caller loaded may be older than the locks taken below
    state: str | None = None
    for _ in NEXT:  # at most one advance per remaining phase
        row = session.execute(
            select(Migration.auto_advance, Migration.state).where(Migration.id == migration_id)
        ).first()
        session.rollback()
        if row is None or not row.auto_advance or row.state not in NEXT:
            return None if row is None else str(row.state)
        try:
            state = advance(session, migration_id, SERVICE_ACTOR, settings, now).state
        except (Conflict, NotFound):
            session.rollback()
            return str(row.state)
        session.commit()
        if state == row.state:  # expired and failed instead of advancing
            break
    return state


def fail_for_step(session: Session, step: Step, actor: str, now: datetime) -> str | None:
    """A step of a migration was acknowledged as failed: end the migration now, with an event,
    rather than at the next advance. Before the domain moved, it fails and rolls back (claims
    released, pools restored); once it runs on the destination (settling) nothing can be rolled
    back, so the migration keeps its claims and states why. Commits; returns the state."""
    if step.migration_id is None:
        return None
    seq, op, host_id, detail = step.seq, step.op, step.host_id, step.detail
    session.expire_all()
    migration, src, dst, domain = _locked(session, step.migration_id, now)
    reason = f"step {seq} ({op}) failed on host {host_id}: {detail or 'no detail given'}"
    if migration.state in ABORTABLE:
        _fail(session, migration, src, dst, domain, actor, now, reason)
    elif migration.state == M.SETTLING:
        migration.reason = reason
        record_event(
            session,
            actor,
            "migration.step_failed",
            "migration",
            migration.id,
            after={"state": migration.state, "reason": reason},
        )
        session.flush()
    state = migration.state
    session.commit()
    return state
