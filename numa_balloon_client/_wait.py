"""The migration's life as the client sees it: when it can be advanced, when it is over.

Mirrors the service's state machine (planned -> preparing -> migrating -> settling ->
completed; aborted/failed end it) so `wait_for_migration(advance=True)` drives a migration the
way an operator would, and stops on a failed step instead of retrying it forever.
"""

from __future__ import annotations

from collections.abc import Iterable

from numa_balloon_client import models as m
from numa_balloon_client.errors import NumaBalloonError

TERMINAL = ("completed", "aborted", "failed")
PHASES = ("prepare", "migrate", "settle", "release")
#: The phase whose steps must all be acknowledged before leaving each state.
GATE = {"preparing": "prepare", "migrating": "migrate", "settling": "settle"}
#: Where a long-poll that returned at once, empty, is taken to be ignored (an older server).
EARLY_FRACTION = 0.5


class WaitTimeout(NumaBalloonError):
    """The migration did not reach one of the states asked for in time (it goes on)."""

    def __init__(
        self, migration: m.MigrationOut, states: Iterable[str], timeout_s: float | None = None
    ) -> None:
        self.migration = migration
        self.states = tuple(states)
        self.timeout_s = timeout_s
        after = "" if timeout_s is None else f" after {timeout_s:g} s"
        super().__init__(f"migration {migration.id} is still {migration.state}{after}")


class StepFailed(NumaBalloonError):
    """A step of the phase that gates the next state failed: only an abort moves it now."""

    def __init__(self, migration: m.MigrationOut, step: m.MigrationStepOut) -> None:
        self.migration = migration
        self.step = step
        super().__init__(
            f"migration {migration.id}: step {step.seq} ({step.phase} {step.op}) failed"
            + (f": {step.detail}" if step.detail else "")
        )


def failed_gate_step(migration: m.MigrationOut) -> m.MigrationStepOut | None:
    gate = GATE.get(migration.state)
    return next((s for s in migration.steps if s.phase == gate and s.state == "failed"), None)


def ready_to_advance(migration: m.MigrationOut) -> bool:
    """Planned, or every step of the current state's gate phase acknowledged."""
    if migration.state == "planned":
        return True
    gate = GATE.get(migration.state)
    if gate is None:
        return False
    return all(s.state == "acked" for s in migration.steps if s.phase == gate)


def pending_steps(migration: m.MigrationOut) -> list[m.MigrationStepOut]:
    """The steps the next advance waits for: the current gate phase's, not yet acknowledged."""
    gate = GATE.get(migration.state)
    return [s for s in migration.steps if s.phase == gate and s.state != "acked"]


def progress(migration: m.MigrationOut) -> dict[str, tuple[int, int]]:
    """Per phase: (steps acknowledged, steps in total), in the plan's order."""
    out: dict[str, tuple[int, int]] = {}
    for s in sorted(migration.steps, key=lambda s: s.seq):
        done, total = out.get(s.phase, (0, 0))
        out[s.phase] = (done + (s.state == "acked"), total + 1)
    return out


def wait_disabled_by(exc: NumaBalloonError) -> bool:
    """A server that validates query parameters and has no `wait`: poll without it."""
    errors = getattr(exc, "errors", [])
    return getattr(exc, "status", 0) in (400, 422) and any("wait" in i.loc for i in errors)
