"""A balloon driver's reports: what they may change, what counts as progress (no database)."""

from __future__ import annotations

from datetime import timedelta

from service.core.balloon import is_active, observe, stalled, stalled_for
from service.db.models import Domain
from tests.core.sim import SETTINGS, T0, make_domain, make_host


def _domain() -> Domain:
    host = make_host([8192, 8192])
    domain, _ = make_domain("vm", host, [2048, 2048], [0, 1])
    for vn in domain.vnodes:
        vn.target_mib = 1024
    domain.target_mib = 2048
    return domain


def test_a_report_lowers_a_charge_but_never_raises_it_above_what_was_held() -> None:
    domain = _domain()
    changes, progress = observe(domain, {0: 4096, 1: 1536}, T0, actor="g", action="reported")
    # vnode 0 claims more than its size and its holding: capped at what it held (2048)
    assert changes.actual_mib[domain.id] == {1: 1536}
    assert progress  # 3584 is nearer 2048 than 4096 was
    assert [e["action"] for e in changes.events] == ["reported"]


def test_no_progress_no_status_change_and_a_stall_is_timed_from_the_target() -> None:
    domain = _domain()
    changes, progress = observe(domain, {0: 2048, 1: 2048}, T0, actor="g", action="reported")
    assert not progress and not changes.status and not changes
    later = T0 + timedelta(seconds=SETTINGS.inactive_after_s + 1)
    assert stalled_for(domain, later) == timedelta(seconds=SETTINGS.inactive_after_s + 1)
    assert not is_active(domain, later, SETTINGS)
    assert not stalled([domain], later, SETTINGS, actor="a")
    flagged = stalled([domain], T0 + timedelta(seconds=21), SETTINGS, actor="a")
    assert flagged.status == [(domain, {"uncooperative": True})]
    assert flagged.events[0]["after"]["stalled_s"] == 21.0
    assert flagged.events[0]["at"] == T0 + timedelta(seconds=21)


def test_progress_of_an_uncooperative_driver_clears_the_flag_with_one_event() -> None:
    domain = _domain()
    domain.uncooperative = True
    changes, progress = observe(domain, {0: 1024, 1: 1024}, T0, actor="g", action="reported")
    assert progress
    assert changes.status == [(domain, {"last_progress_at": T0, "uncooperative": False})]
    assert [e["action"] for e in changes.events] == ["domain.cooperative", "reported"]
    assert {e["at"] for e in changes.events} == {T0}  # stamped with the report's now
    # A migrating domain's pools follow its plan: never active for a squeeze.
    domain.uncooperative = False
    domain.state = "migrating"
    assert not is_active(domain, T0, SETTINGS)
