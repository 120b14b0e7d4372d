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
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, selectinload

from service.core.balloon import pool_change_rows
from service.core.domains import topology_of
from service.db.accounting import HostAccounting, live_claim
from service.db.apply import apply, write_counters
from service.db.audit import record_event
from service.db.changes import ChangeSet, NewTarget, step_row
from service.db.loaders import load_host_accounting
from service.db.locks import lock_hosts
from service.db.models import Claim, Domain, Host, Migration, Step
from service.engine.migration import MigrationPlan, plan_migration
from service.errors import Conflict, InvalidInput, NotFound
from service.schemas.agent import StepDestination
from service.schemas.migrations import (
    ClaimOut,
    MigrationOut,
    MigrationRequest,
    MigrationStepOut,
    PlanOut,
    PlanStepOut,
    RunsOn,
)
from service.settings import Settings
from service.vocabulary import (
    ACTIVE_MIGRATION_STATES,
    DomainState,
    MigrationState,
    StepState,
)

I64 = NDArray[np.int64]
M = MigrationState
ACTIVE = ACTIVE_MIGRATION_STATES
ABORTABLE = (M.PLANNED, M.PREPARING, M.MIGRATING)
NEXT: dict[str, MigrationState] = {
    M.PLANNED: M.PREPARING,
    M.PREPARING: M.MIGRATING,
    M.MIGRATING: M.SETTLING,
    M.SETTLING: M.COMPLETED,
}
# The phase whose steps must all be acknowledged before leaving each state.
GATE: dict[str, str] = {M.PREPARING: "prepare", M.MIGRATING: "migrate", M.SETTLING: "settle"}


def _policy(domain: Domain, body: MigrationRequest) -> str:
    if body.policy is not None:
        return body.policy
    return "faithful" if domain.policy == "explicit" else domain.policy


def _states(
    session: Session, src_id: str, dst_id: str, *, lock: bool, now: datetime | None = None
) -> tuple[HostAccounting, HostAccounting]:
    """Both hosts' states; when writing, both locked in id order (one global lock order)."""
    if lock:
        lock_hosts(session, [src_id, dst_id])
    # Locked loads again when writing: they lock the pnode rows too and refresh what the session
    # already held (a sweep earlier in this request read the same rows).
    src = load_host_accounting(session, src_id, lock=lock, now=now)
    dst = load_host_accounting(session, dst_id, lock=lock, now=now)
    if src is None or dst is None:
        raise NotFound("the source or destination host no longer exists")
    return src, dst


def compute_plan(
    session: Session, body: MigrationRequest, *, lock: bool, now: datetime | None = None
) -> tuple[Domain, HostAccounting, HostAccounting, MigrationPlan]:
    # Only the host id is read before the hosts are locked: a Domain object loaded here would
    # stay in the identity map with a pre-lock version and fail its update as stale (412).
    row = session.execute(
        select(Domain.id, Domain.host_id).where(Domain.id == body.domain_id)
    ).first()
    if row is None:
        raise NotFound(f"no domain with id {body.domain_id}")
    if row.host_id is None:
        raise Conflict("the domain has no host to migrate from")
    if row.host_id == body.destination_host_id:
        raise InvalidInput(
            "the domain already runs on that host; use POST /v1/hosts/{id}/rebalance",
            errors=[{"loc": ["body", "destination_host_id"], "msg": "same as the source"}],
        )
    src, dst = _states(session, row.host_id, body.destination_host_id, lock=lock, now=now)
    found = src.domain(row.id)
    if found is None:
        raise Conflict("the domain moved or was deleted while this request ran; retry")
    domain = found
    if lock and domain.state != DomainState.RUNNING:
        raise Conflict(f"the domain is {domain.state}; one migration at a time")
    if dst.host.state != "active":
        raise Conflict(f"destination host {dst.host.name} is {dst.host.state}")
    topo = topology_of(domain)
    plan = plan_migration(
        size_mib=topo.size_mib,
        vcpu_count=topo.vcpu_count(),
        vdist=topo.distances,
        block_mib=topo.block_mib,
        dynamic_min_mib=domain.dynamic_min_mib,
        dynamic_max_mib=domain.dynamic_max_mib,
        backing_src=src.backing[domain.id],
        home_src=np.array([vn.home_pnode or 0 for vn in domain.vnodes], dtype=np.int64),
        pdist_src=src.pdist,
        free_dst_mib=np.maximum(dst.headroom_mib(), 0),
        cpus_dst=dst.cpus,
        pdist_dst=dst.pdist,
        load_vcpus_dst=dst.load_vcpus(),
        policy=_policy(domain, body),
        strategy=body.strategy,
    )
    return domain, src, dst, plan


def plan_out(
    domain: Domain, src: HostAccounting, dst: HostAccounting, plan: MigrationPlan
) -> PlanOut:
    host_of = {"source": src.host.id, "destination": dst.host.id}
    return PlanOut(
        feasible=plan.feasible,
        reason=plan.reason,
        strategy=plan.strategy,
        domain_id=domain.id,
        source_host_id=src.host.id,
        destination_host_id=dst.host.id,
        mapping_before=plan.mapping_before.tolist(),
        mapping_after=plan.mapping_after.tolist(),
        target_before_mib=plan.target_before_mib,
        target_after_mib=plan.target_after_mib,
        claims_mib=plan.claims_mib.tolist(),
        steps=[
            PlanStepOut(
                seq=s.seq,
                phase=s.phase,
                op=s.op,
                host=s.host,
                host_id=host_of[s.host],
                vnode=s.vnode,
                pnode=s.pnode,
                mib=s.mib,
                pfn_ranges=[list(r) for r in s.pfn_ranges],
                target_mib=s.target_mib,
            )
            for s in plan.steps
        ],
        moved_mib=plan.moved_mib,
        distortion_before=plan.distortion_before,
        distortion_after=plan.distortion_after,
        remote_fraction_before=plan.remote_fraction_before,
        remote_fraction_after=plan.remote_fraction_after,
        backing_before=plan.backing_before.tolist(),
        backing_after=plan.backing_after.tolist(),
    )


def _grow_flags(plan: MigrationPlan) -> list[bool | None]:
    """Each pool step's direction, from the pool level before it (replayed per vnode)."""
    level = {v: int(t) for v, t in enumerate(plan.backing_before.sum(axis=1).tolist())}
    out: list[bool | None] = []
    for s in plan.steps:
        if s.vnode is None or s.target_mib is None or s.op not in ("balloon", "plug", "unplug"):
            out.append(None)
            continue
        out.append(s.target_mib > level[s.vnode])
        level[s.vnode] = s.target_mib
    return out


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
        for s, grow in zip(plan.steps, _grow_flags(plan), strict=True)
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
    _add_claims(session, migration, dst.host.id, domain.id, plan.claims_mib, now)
    dst.claimed_mib += plan.claims_mib
    domain.state = DomainState.MIGRATING
    write_counters(session, dst)
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


def _add_claims(
    session: Session,
    migration: Migration,
    host_id: str,
    domain_id: str,
    claims_mib: I64,
    now: datetime,
) -> None:
    """One claim row per destination pnode with memory to reserve, expiring with the migration."""
    for pnode, mib in enumerate(claims_mib.tolist()):
        if mib > 0:
            session.add(
                Claim(
                    host_id=host_id,
                    pnode=pnode,
                    mib=int(mib),
                    domain_id=domain_id,
                    migration_id=migration.id,
                    expires_at=migration.expires_at,
                    created_at=now,
                )
            )


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
    src, dst = _states(session, ids[0], ids[1], lock=True, now=now)
    migration = load_migration(session, migration_id, lock=True)
    domain = src.domain(migration.domain_id) or dst.domain(migration.domain_id)
    if domain is None:
        raise Conflict("the migrating domain is gone")
    return migration, src, dst, domain


def _set_phase_steps(migration: Migration, phases: Sequence[str], state: str) -> None:
    for step in migration.steps:
        if step.phase in phases and step.state == StepState.WAITING:
            step.state = state


def _blocking(migration: Migration, phase: str) -> list[Step]:
    return [s for s in migration.steps if s.phase == phase and s.state != StepState.ACKED]


def next_state(migration: Migration) -> str:
    """The state an advance moves the migration to, once every step of its gate is
    acknowledged (pure); a 409 naming the steps, their actor and host, while one is not."""
    if migration.state not in NEXT:
        raise Conflict(f"the migration is {migration.state}; nothing to advance")
    gate = GATE.get(migration.state)
    blocking = [] if gate is None else _blocking(migration, gate)
    failed = [s for s in blocking if s.state == StepState.FAILED]
    if failed:
        raise Conflict(
            f"step {failed[0].seq} ({failed[0].op}) failed: {failed[0].detail}; abort",
            failed_steps=[s.id for s in failed],
        )
    if blocking:
        raise Conflict(
            f"{len(blocking)} {gate} step(s) not yet acknowledged: "
            + "; ".join(_who(s) for s in blocking[:5]),
            pending_steps=[s.id for s in blocking],
            pending=[_pending(s) for s in blocking],
        )
    return NEXT[migration.state]


def advance(
    session: Session, migration_id: str, actor: str, settings: Settings, now: datetime
) -> Migration:
    migration, src, dst, domain = _locked(session, migration_id, now)
    if _expired(migration, now):
        _fail(session, migration, src, dst, domain, actor, now, "claims expired")
        return migration
    before = migration.state
    target = next_state(migration)
    internal = migration.plan["internal"]
    if target == M.PREPARING:
        apply(session, src, _carry(domain, internal["carried_mib"]))
        _set_phase_steps(migration, ["prepare"], StepState.PENDING)
    elif target == M.MIGRATING:
        _set_phase_steps(migration, ["migrate"], StepState.PENDING)
    elif target == M.SETTLING:
        _switch_host(session, migration, src, dst, domain, now)
        _set_phase_steps(migration, ["settle", "release"], StepState.PENDING)
    else:
        session.execute(delete(Claim).where(Claim.migration_id == migration.id))
        dst.claimed_mib = _live_claims(session, dst, now)
        write_counters(session, dst)
        domain.state = DomainState.RUNNING
    migration.state = target
    if before == M.PLANNED:
        # From here on the guest may be copying into the claimed memory: no clock frees it.
        migration.expires_at = None
        session.execute(
            update(Claim).where(Claim.migration_id == migration.id).values(expires_at=None)
        )
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


def _pending(step: Step) -> dict[str, Any]:
    """A step the advance waits for, with who must complete it and where."""
    return {
        "id": step.id,
        "seq": step.seq,
        "op": step.op,
        "vnode": step.vnode,
        "actor": step.actor,
        "host_id": step.host_id,
        "state": step.state,
    }


def _who(step: Step) -> str:
    vnode = "" if step.vnode is None else f" vnode {step.vnode}"
    return f"{step.op}{vnode} by the {step.actor} on host {step.host_id}"


def _carry(domain: Domain, levels: Sequence[int]) -> ChangeSet:
    """The pools' levels while the domain moves (what the guest carries across)."""
    carried = [int(t) for t in levels]
    total = NewTarget(domain=domain, target_mib=sum(carried), set_at=domain.target_set_at)
    return ChangeSet(pool_targets={domain.id: carried}, targets=[total])


def _live_claims(session: Session, state: HostAccounting, now: datetime) -> I64:
    """The host's claims live at `now`, read again after this transaction changed them."""
    fresh = load_host_accounting(session, state.host.id, lock=False, now=now)
    assert fresh is not None
    return fresh.claimed_mib


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
    session.execute(delete(Claim).where(Claim.migration_id == migration.id))
    _add_claims(session, migration, dst.host.id, domain.id, spare, now)
    session.flush()
    src.domains.remove(domain)
    src.backing.pop(domain.id, None)
    domain.host_id = dst.host.id
    for vn, home in zip(domain.vnodes, plan["mapping_after"], strict=True):
        vn.home_pnode = int(home)
    dst.domains.append(domain)
    dst.claimed_mib = _live_claims(session, dst, now)
    write_counters(session, src)
    arrived = ChangeSet(
        backing={domain.id: after},
        # re-reported on the new host; never trusted above the target meanwhile
        actual_mib={domain.id: {vn.index: None for vn in domain.vnodes}},
        targets=[
            NewTarget(domain=domain, target_mib=int(after.sum()), set_at=domain.target_set_at)
        ],
    )
    apply(session, dst, arrived)


def _expired(migration: Migration, now: datetime) -> bool:
    """Only a `planned` migration's claims are leased; nothing can be using them yet."""
    return (
        migration.state == M.PLANNED
        and migration.expires_at is not None
        and migration.expires_at <= now
    )


def mark_progress(session: Session, migration: Migration, now: datetime, actor: str) -> None:
    """The migration moved (advanced, a step acknowledged): it is not stuck."""
    migration.progress_at = now
    if migration.stuck_at is not None:
        migration.stuck_at = None
        record_event(
            session, actor, "migration.progressing", "migration", migration.id,
            after={"state": migration.state},
        )  # fmt: skip


def stuck_reason(migration: Migration, now: datetime, settings: Settings) -> str | None:
    """Why a migration past `planned` counts as stuck (no progress for `stuck_after_s`)."""
    if migration.state not in (M.PREPARING, M.MIGRATING, M.SETTLING):
        return None
    idle_s = (now - migration.progress_at).total_seconds()
    if idle_s < settings.stuck_after_s:
        return None
    gate = GATE[migration.state]
    waiting = [s for s in migration.steps if s.phase == gate and s.state != StepState.ACKED]
    what = f"{len(waiting)} {gate} step(s) unacknowledged" if waiting else "ready to advance"
    return (
        f"no progress for {idle_s:.0f} s in {migration.state} ({what}); its claims are held "
        "until it is advanced, or aborted saying where the domain runs"
    )


def abort_outcome(migration: Migration, runs_on: RunsOn | None) -> Literal["rollback", "moved"]:
    """What an abort does (pure): roll back to the source, or record that the domain moved.

    Once the migrate step may have run, only the caller knows where the domain runs: rolling
    back a domain that runs on the destination would give away memory it is using."""
    if migration.state == M.SETTLING:
        raise Conflict("the domain already runs on the destination; advance to complete it")
    if migration.state not in ABORTABLE:
        raise Conflict(f"the migration is {migration.state}; nothing to abort")
    if migration.state != M.MIGRATING or _migrate_failed(migration):
        return "rollback"
    if runs_on is None:
        raise Conflict(
            "the migrate step may have run: say where the domain runs now "
            '(body {"runs_on": "source"} or {"runs_on": "destination"}); '
            "its claims are held until then",
            options=["source", "destination"],
        )
    return "moved" if runs_on == "destination" else "rollback"


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


def _migrate_failed(migration: Migration) -> bool:
    """The source agent reported the live migration failed: the domain is still on the source."""
    return any(s.phase == "migrate" and s.state == StepState.FAILED for s in migration.steps)


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
    session.execute(delete(Claim).where(Claim.migration_id == migration.id))
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
    session.flush()
    dst.claimed_mib = _live_claims(session, dst, now)
    write_counters(session, dst)
    restored = NewTarget(domain=domain, target_mib=int(x_src.sum()), set_at=domain.target_set_at)
    back = ChangeSet(backing={domain.id: x_src}, targets=[restored], pool_steps={domain.id: steps})
    apply(session, src, back)


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
    if not _expired(migration, now):
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


def migration_out(
    migration: Migration, claims: list[ClaimOut], now: datetime, settings: Settings
) -> MigrationOut:
    """The migration as of `now`: a lapsed lease shows as failed before the sweeper writes it."""
    plan = {k: v for k, v in migration.plan.items() if k != "internal"}
    state, reason = migration.state, migration.reason
    if _expired(migration, now):
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
