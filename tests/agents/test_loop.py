"""The one cycle loop both agents run: which failures are waited out (no answer, 5xx, 503,
429) and which end the program, and the backoff's bounds."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from numa_balloon_agent.agent import Agent, Settings
from numa_balloon_agent.backends.sysfs import SysfsBackend
from numa_balloon_client import ConnectionFailed, NotFound, ServiceUnavailable
from numa_balloon_client.errors import ServerError, TooManyRequests
from numa_balloon_client.programs.loop import Backoff, run_cycles
from numa_balloon_guest.agent import GuestAgent
from numa_balloon_guest.blocks import MemoryBlocks
from tests.agents.trees import guest_tree, host_tree

TRANSIENT = [
    ConnectionFailed("GET", "/v1/x", httpx.ConnectError("refused")),
    ServiceUnavailable(503, "Service Unavailable"),
    ServerError(500, "Internal Server Error"),
    TooManyRequests(429, "Too Many Requests"),
]


def scripted(*outcomes: Exception | None) -> Callable[[], None]:
    """A cycle that raises each given exception in turn (None: a good cycle)."""
    queue = list(outcomes)

    def cycle() -> None:
        outcome = queue.pop(0)
        if outcome is not None:
            raise outcome

    return cycle


@pytest.mark.parametrize("failure", TRANSIENT, ids=lambda e: type(e).__name__)
def test_transient_failures_are_waited_out(failure: Exception) -> None:
    delays: list[float] = []
    backoff = Backoff(interval_s=2.0, max_s=60.0, rng=random.Random(7))
    done = run_cycles(scripted(failure, failure, None), backoff, cycles=3, sleep=delays.append)
    assert done == 0
    assert 2.0 <= delays[0] <= 4.0 and 4.0 <= delays[1] <= 8.0  # doubling, jittered down
    assert len(delays) == 2  # no sleep after the last cycle


def test_once_raises_and_refusals_end_the_loop() -> None:
    backoff = Backoff()
    with pytest.raises(ConnectionFailed):
        run_cycles(scripted(TRANSIENT[0]), backoff, once=True, sleep=lambda _: None)
    with pytest.raises(NotFound):
        run_cycles(scripted(NotFound(404, "Not Found")), backoff, sleep=lambda _: None)
    with pytest.raises(KeyError):  # a bug is not waited out either
        run_cycles(scripted(KeyError("x")), backoff, sleep=lambda _: None)


def test_backoff_is_bounded_and_never_spins() -> None:
    backoff = Backoff(interval_s=0.0, max_s=30.0, rng=random.Random(1))
    assert backoff.delay_s(0) == 0.0  # healthy, as asked (the demo drives cycles itself)
    assert 1.0 <= backoff.delay_s(1) <= 2.0  # failing: at least half a second even so
    assert all(15.0 <= backoff.delay_s(n) <= 30.0 for n in range(5, 60))


def test_both_agents_run_the_shared_loop(tmp_path: Path) -> None:
    """A 429 is waited out by the host agent (it used to end it) and the guest agent alike."""
    settings = Settings(
        url="http://127.0.0.1:9", admin_token="t", name="h", state_dir=tmp_path, interval_s=1
    )
    delays: list[float] = []
    host = Agent(SysfsBackend(host_tree(tmp_path / "h", [1024])), settings, sleep=delays.append)
    host.cycle = scripted(TRANSIENT[3], None)  # type: ignore[method-assign]
    assert host.run(cycles=2) == 0 and len(delays) == 1 and delays[0] >= 1.0
    guest = GuestAgent(
        client=None,  # type: ignore[arg-type]
        blocks=MemoryBlocks(guest_tree(tmp_path / "g", [2])),
        interval_s=1,
        sleep=delays.append,
    )
    guest.cycle = scripted(TRANSIENT[3], None)  # type: ignore[method-assign]
    assert guest.run(cycles=2) == 0 and len(delays) == 2
