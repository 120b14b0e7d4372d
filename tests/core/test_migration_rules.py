"""A migration's phases, gates, abort and liveness rules on a fake clock (no database)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.core.migration_rules import abort_outcome, lease_expired, next_state, stuck_reason
from service.db.base import new_id
from service.db.models import Migration, Step
from service.errors import Conflict
from tests.core.sim import SETTINGS, T0

PHASES = [("claim", "claim"), ("prepare", "balloon"), ("migrate", "migrate"), ("settle", "plug")]


def _migration(state: str = "planned") -> Migration:
    steps = [
        Step(
            id=new_id(),
            seq=i,
            phase=phase,
            op=op,
            vnode=0 if op in ("balloon", "plug") else None,
            host_id="src" if phase in ("prepare", "migrate") else "dst",
            state="acked" if phase == "claim" else "waiting",
            detail=None,
        )
        for i, (phase, op) in enumerate(PHASES)
    ]
    return Migration(
        id=new_id(),
        state=state,
        steps=steps,
        expires_at=T0 + timedelta(seconds=SETTINGS.claim_ttl_s),
        progress_at=T0,
    )


def _walk(m: Migration, phase: str, state: str) -> None:
    for s in m.steps:
        if s.phase == phase:
            s.state = state


def test_each_phase_waits_for_its_gate_and_names_who_must_act() -> None:
    m = _migration()
    assert next_state(m) == "preparing"  # the claims were taken when it was created
    m.state = "preparing"
    _walk(m, "prepare", "pending")
    with pytest.raises(Conflict) as err:
        next_state(m)
    pending = err.value.extra["pending"]
    assert [(p["op"], p["actor"], p["host_id"]) for p in pending] == [("balloon", "guest", "src")]
    _walk(m, "prepare", "acked")
    assert next_state(m) == "migrating"
    m.state = "migrating"
    _walk(m, "migrate", "failed")
    with pytest.raises(Conflict, match="failed"):
        next_state(m)
    _walk(m, "migrate", "acked")
    m.state = "settling"
    _walk(m, "settle", "acked")
    assert next_state(m) == "completed"
    m.state = "completed"
    with pytest.raises(Conflict, match="nothing to advance"):
        next_state(m)


def test_abort_in_migrating_must_say_where_the_domain_runs() -> None:
    m = _migration("preparing")
    assert abort_outcome(m, None) == "rollback"
    m.state = "migrating"
    with pytest.raises(Conflict) as err:
        abort_outcome(m, None)
    assert err.value.extra["options"] == ["source", "destination"]
    assert abort_outcome(m, "source") == "rollback"
    assert abort_outcome(m, "destination") == "moved"
    _walk(m, "migrate", "failed")  # the source agent said the move failed: it is on the source
    assert abort_outcome(m, None) == "rollback"
    m.state = "settling"
    with pytest.raises(Conflict, match="already runs on the destination"):
        abort_outcome(m, "source")


def test_only_a_planned_migrations_claims_expire_and_a_running_one_turns_stuck() -> None:
    m = _migration()
    after_ttl = T0 + timedelta(seconds=SETTINGS.claim_ttl_s)
    assert lease_expired(m, after_ttl) and not lease_expired(m, after_ttl - timedelta(seconds=1))
    m.state, m.expires_at = "migrating", None  # past planned: held, whatever the clock says
    assert not lease_expired(m, after_ttl + timedelta(days=1))
    _walk(m, "migrate", "pending")
    quiet = timedelta(seconds=SETTINGS.stuck_after_s)
    assert stuck_reason(m, T0 + quiet - timedelta(seconds=1), SETTINGS) is None
    reason = stuck_reason(m, T0 + quiet, SETTINGS)
    assert reason is not None and "1 migrate step(s) unacknowledged" in reason
    m.progress_at = T0 + quiet  # an ack or an advance: progress
    assert stuck_reason(m, T0 + quiet, SETTINGS) is None
