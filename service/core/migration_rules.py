"""A migration's rules, pure: the state machine's next state and its gates, the lease, when a
migration counts as stuck, and what an abort does. No session: tests drive them on a fake clock."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from service.db.models import Migration, Step
from service.errors import Conflict
from service.schemas.migrations import RunsOn
from service.settings import Settings
from service.vocabulary import ACTIVE_MIGRATION_STATES, MigrationState, StepState

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


def _blocking(migration: Migration, phase: str) -> list[Step]:
    return [s for s in migration.steps if s.phase == phase and s.state != StepState.ACKED]


def next_state(migration: Migration, host_names: Mapping[str, str] | None = None) -> str:
    """The state an advance moves the migration to, once every step of its gate is
    acknowledged (pure); a 409 naming the steps, their actor and host (by name where
    `host_names` knows it: people read this text), while one is not."""
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
            + "; ".join(_who(s, host_names or {}) for s in blocking[:5]),
            pending_steps=[s.id for s in blocking],
            pending=[_pending(s) for s in blocking],
        )
    return NEXT[migration.state]


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


def _who(step: Step, host_names: Mapping[str, str]) -> str:
    vnode = "" if step.vnode is None else f" vnode {step.vnode}"
    host = host_names.get(step.host_id or "", step.host_id)
    return f"{step.op}{vnode} by the {step.actor} on host {host}"


def lease_expired(migration: Migration, now: datetime) -> bool:
    """Only a `planned` migration's claims are leased; nothing can be using them yet."""
    return (
        migration.state == M.PLANNED
        and migration.expires_at is not None
        and migration.expires_at <= now
    )


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


def _migrate_failed(migration: Migration) -> bool:
    """The source agent reported the live migration failed: the domain is still on the source."""
    return any(s.phase == "migrate" and s.state == StepState.FAILED for s in migration.steps)
