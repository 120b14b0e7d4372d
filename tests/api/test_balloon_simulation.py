"""A squeezed-style simulation: guests whose balloon drivers are ideal, slow, stuck,
intermittently stuck, or stop short of their target, driven by a fake clock over the real API.

Like XAPI squeezed's own test suite, the drivers are simulated; the service under test is real:
its guest API records progress, the agent's heartbeat sweeps stuck drivers, and squeezes leave
inactive and uncooperative guests out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI

from service.app import create_app
from service.settings import Settings
from tests.api.client import ApiClient, api_client
from tests.api.factories import domain_body
from tests.conftest import ADMIN_TOKEN


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 1.0) -> None:
        self.now += timedelta(seconds=seconds)


Driver = Callable[[int, int, int], int]  # (tick, actual, target) -> new actual


def ideal(_: int, actual: int, target: int) -> int:
    return target


def slow(_: int, actual: int, target: int) -> int:
    step = 128
    return actual + max(-step, min(step, target - actual))


def stuck(_: int, actual: int, target: int) -> int:
    return actual


def intermittent(tick: int, actual: int, target: int) -> int:
    return slow(tick, actual, target) if tick % 3 == 0 else actual


def short(_: int, actual: int, target: int) -> int:
    return max(target + 256, min(actual, target + 256)) if target < actual else target


DRIVERS: dict[str, Driver] = {
    "ideal": ideal,
    "slow": slow,
    "stuck": stuck,
    "intermittent": intermittent,
    "short": short,
}


@pytest.fixture
def sim(db_url: str) -> Iterator[tuple[ApiClient, FakeClock]]:
    clock = FakeClock()
    app: FastAPI = create_app(
        Settings(
            database_url=db_url,
            admin_token=ADMIN_TOKEN,
            inactive_after_s=5,
            uncooperative_after_s=20,
        ),
        clock=clock,
    )
    with api_client(app, ADMIN_TOKEN) as c:
        yield c, clock
    app.state.engine.dispose()


def run(
    client: ApiClient,
    clock: FakeClock,
    host: dict[str, Any],
    doms: dict[str, dict[str, Any]],
    ticks: int,
) -> None:
    """Each tick: every guest moves its pools toward their targets and reports; the agent
    sends its heartbeat (which sweeps stuck drivers)."""
    for t in range(ticks):
        clock.tick()
        for name, d in doms.items():
            pools = client.get("/v1/guest/balloon", token=d["guest_token"]).json()["vnodes"]
            actual = d.setdefault("actual", {p["index"]: p["target_mib"] for p in pools})
            for p in pools:
                actual[p["index"]] = DRIVERS[name](t, actual[p["index"]], p["target_mib"])
            r = client.put(
                "/v1/guest/balloon",
                token=d["guest_token"],
                json={"vnodes": [{"index": i, "actual_mib": a} for i, a in actual.items()]},
            )
            assert r.status_code == 200, r.text
        client.put(
            f"/v1/agent/hosts/{host['id']}/observed",
            token=host["agent_token"],
            json={"pnodes": [{"index": 0, "free_mib": 0}]},
        )


def test_stuck_and_short_drivers_are_flagged_and_squeezes_hold_them(
    sim: tuple[ApiClient, FakeClock],
) -> None:
    client, clock = sim
    host = client.post(
        "/v1/hosts",
        json={"name": "h", "pnodes": [{"memory_mib": 20480, "cpus": 16}], "distances": [[10]]},
    ).json()
    doms = {}
    for name in DRIVERS:
        doms[name] = client.post(
            "/v1/domains",
            json=domain_body(name, [2048, 2048], dynamic_min_mib=1024, host_id=host["id"]),
        ).json()
    run(client, clock, host, doms, 2)  # everyone reports its starting size

    # Free 10 GiB: every domain is asked to shrink from 4096 to 2048 MiB.
    r = client.post(f"/v1/hosts/{host['id']}/squeeze", json={"total_free_mib": 10240})
    assert r.status_code == 200, r.text
    assert {d["target_mib"] for d in r.json()["domains"]} == {2048}
    run(client, clock, host, doms, 30)

    state = {n: client.get(f"/v1/domains/{d['id']}").json() for n, d in doms.items()}
    flagged = {n for n, d in state.items() if d["uncooperative"]}
    assert flagged == {"stuck", "short"}
    for n in ("ideal", "slow", "intermittent"):
        assert sum(v["actual_mib"] for v in state[n]["vnodes"]) == 2048
    events = client.get("/v1/events", params={"limit": 500}).json()["items"]
    assert sorted(
        e["subject_id"] for e in events if e["action"] == "domain.uncooperative"
    ) == sorted(doms[n]["id"] for n in ("stuck", "short"))

    # The memory stuck guests still hold is accounted: max(target, actual).
    acc = client.get(f"/v1/hosts/{host['id']}/accounting").json()["pnodes"][0]
    assert acc["allocated_mib"] == 3 * 2048 + 4096 + (2048 + 2 * 256)

    # A new squeeze leaves the uncooperative guests out and holds them at their actual size.
    plan = client.post(
        f"/v1/hosts/{host['id']}/squeeze",
        json={"total_free_mib": 20480 - 3 * 1024 - 4096 - 2560, "dry_run": True},
    ).json()
    held = {d["domain_id"]: d for d in plan["domains"] if d["held"]}
    assert set(held) == {doms["stuck"]["id"], doms["short"]["id"]}
    assert held[doms["stuck"]["id"]]["target_mib"] == 4096
    assert held[doms["short"]["id"]]["target_mib"] == 2048 + 2 * 256
    # Counted at their actual size, their targets left as they are: not an "increase".
    assert {d["phase"] for d in held.values()} == {"held"}
    assert {d["target_mib"] for d in plan["domains"] if not d["held"]} == {1024}
    # Asking for more than the cooperative guests can give fails with the true maximum.
    too_much = client.post(f"/v1/hosts/{host['id']}/squeeze", json={"total_free_mib": 20480})
    assert too_much.status_code == 409
    assert too_much.json()["max_feasible_mib"] == 20480 - 3 * 1024 - 4096 - 2560

    # Progress clears the flag: the stuck guest finally gives its memory back.
    doms["stuck"]["actual"] = {0: 1024, 1: 1024}
    client.put(
        "/v1/guest/balloon",
        token=doms["stuck"]["guest_token"],
        json={"vnodes": [{"index": 0, "actual_mib": 1024}, {"index": 1, "actual_mib": 1024}]},
    )
    assert not client.get(f"/v1/domains/{doms['stuck']['id']}").json()["uncooperative"]


def test_a_slow_driver_is_inactive_for_one_round_but_never_flagged(
    sim: tuple[ApiClient, FakeClock],
) -> None:
    client, clock = sim
    host = client.post(
        "/v1/hosts",
        json={"name": "h", "pnodes": [{"memory_mib": 8192, "cpus": 4}], "distances": [[10]]},
    ).json()
    doms = {
        "slow": client.post(
            "/v1/domains",
            json=domain_body("slow", [4096], dynamic_min_mib=1024, host_id=host["id"]),
        ).json()
    }
    run(client, clock, host, doms, 1)
    client.put(f"/v1/domains/{doms['slow']['id']}/target", json={"target_mib": 1024})
    clock.tick(6)  # no report for 6 s: inactive, left out of this round
    plan = client.post(
        f"/v1/hosts/{host['id']}/squeeze", json={"total_free_mib": 0, "dry_run": True}
    ).json()
    assert plan["domains"][0]["held"]
    run(client, clock, host, doms, 30)
    d = client.get(f"/v1/domains/{doms['slow']['id']}").json()
    assert not d["uncooperative"] and d["vnodes"][0]["actual_mib"] == 1024
