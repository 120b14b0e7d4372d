"""The agents' loop: one cycle every interval, and after failures that time may cure (the
service away, overloaded or restarting) a bounded, jittered backoff instead of a crash.

Both agents run it: the host agent (observe, report, carry out steps) and the guest agent (plug
or unplug blocks, report the pools). What a cycle does is theirs; when to run the next one,
and which failures end the program, is decided here once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from numa_balloon_client.programs.exits import TRANSIENT, one_line

log = logging.getLogger("numa_balloon_client.programs")

#: The base of the backoff when the interval is shorter (a zero interval must not spin).
MIN_BACKOFF_BASE_S = 1.0


@dataclass
class Backoff:
    """The interval between good cycles; after `failures` bad ones in a row, twice as long per
    failure up to `max_s`, scaled by a random factor in [0.5, 1] so a fleet restarted together
    does not come back in step."""

    interval_s: float = 10.0
    max_s: float = 300.0
    rng: random.Random = field(default_factory=random.Random)

    def delay_s(self, failures: int) -> float:
        if failures == 0:
            return self.interval_s
        base = max(self.interval_s, MIN_BACKOFF_BASE_S)
        return min(self.max_s, base * 2.0 ** min(failures, 16)) * self.rng.uniform(0.5, 1.0)


def transient(exc: BaseException) -> bool:
    """A failure the next cycle may not meet: no answer, 5xx, 503, 429."""
    return isinstance(exc, TRANSIENT)


def run_cycles(
    cycle: Callable[[], object],
    backoff: Backoff,
    *,
    once: bool = False,
    cycles: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Run `cycle` until `cycles` are done (forever when None). With `once`, one cycle whose
    failure, transient or not, is raised to the caller (which says it in one line and exits);
    otherwise a transient failure is logged and waited out, anything else is raised."""
    failures = done = 0
    while True:
        try:
            cycle()
            failures = 0
        except Exception as exc:
            if once or not transient(exc):
                raise
            failures += 1
            log.warning(
                "control plane unavailable; backing off",
                extra={"error": one_line(exc), "failures": failures},
            )
        done += 1
        if once or (cycles is not None and done >= cycles):
            return 0
        sleep(backoff.delay_s(failures))
