"""Issue 27 item 6: the drift flag flapped around its 1,024 MiB threshold (6 flagged, 5 cleared
in a few minutes on a real host). It is raised above the threshold and cleared only below a lower
line (`drift_clear_mib`, default half the threshold)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from service.core.agent_report import drift, drift_rows
from service.db.accounting import HostAccounting
from tests.core.sim import SETTINGS, T0, make_host


def test_the_flag_rises_above_the_threshold_and_clears_only_below_the_lower_line() -> None:
    accounted = [10_000]
    flagged = False
    seen = []
    # A drift hovering around the threshold (1024), then settling well below it.
    for drift_mib in [900, 1100, 1000, 1030, 900, 700, 1025, 600, 400, 1000]:
        flagged, _ = drift_rows(
            accounted,
            [10_000 + drift_mib],
            1024,
            flagged_before=flagged,
            clear_below_mib=512,
        )
        seen.append(flagged)
    assert seen == [False, True, True, True, True, True, True, True, False, False]
    # Without hysteresis (the old rule) the same series flapped: 3 flags, 3 clears.
    old = [abs(d) > 1024 for d in [900, 1100, 1000, 1030, 900, 700, 1025, 600, 400, 1000]]
    assert sum(1 for a, b in zip([False, *old], old, strict=False) if a != b) == 6


def test_the_host_flag_follows_the_settings_lower_line() -> None:
    host = make_host([16384])
    state = HostAccounting(host=host, domains=[], backing={}, claimed_mib=np.zeros(1, np.int64))
    assert SETTINGS.drift_clear_below_mib == SETTINGS.drift_threshold_mib // 2
    now = T0 + timedelta(seconds=1)
    # The host OS's own memory, unreserved:
    flagged, _, changes = drift(state, {0: 16384 - 1500}, now, SETTINGS, "agent")
    assert flagged and [e["action"] for e in changes.events] == ["host.drift_flagged"]
    host.drift_flagged = True
    # Below the threshold, above the line:
    flagged, _, changes = drift(state, {0: 16384 - 900}, now, SETTINGS, "agent")
    assert flagged and not changes.events
    flagged, _, changes = drift(state, {0: 16384 - 300}, now, SETTINGS, "agent")
    assert not flagged and [e["action"] for e in changes.events] == ["host.drift_cleared"]


def test_a_stamped_observation_writes_only_a_moved_flag() -> None:
    """The batch report's lock already stamped `observed_at`: drift then writes the host's
    status only when the flag moves (the heartbeat, unstamped, always stamps it)."""
    host = make_host([16384])
    state = HostAccounting(host=host, domains=[], backing={}, claimed_mib=np.zeros(1, np.int64))
    now = T0 + timedelta(seconds=1)
    _, _, changes = drift(state, {0: 16384}, now, SETTINGS, "agent", stamped=True)
    assert not changes.status and changes.observed_free_mib == {0: 16384}
    _, _, changes = drift(state, {0: 16384}, now, SETTINGS, "agent")
    assert changes.status == [(host, {"observed_at": now})]
    _, _, changes = drift(state, {0: 16384 - 1500}, now, SETTINGS, "agent", stamped=True)
    assert changes.status == [(host, {"drift_flagged": True})]
