"""The unit of work (service/core/unit.py): a unit commits once, a read or a discarded unit rolls
back, a deadlock runs the unit again from the start, retries exhausted are a 409, and what runs
after a unit's commit (driving a migration on) is retried on its own, never by repeating the
unit that already committed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg.errors
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from service.core import migrations, unit
from service.db.audit import record_event
from service.db.models import Event
from service.errors import Contended
from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body
from tests.api.test_migrations import seed_cluster


def _deadlock() -> OperationalError:
    return OperationalError("UPDATE ...", {}, psycopg.errors.DeadlockDetected("deadlock detected"))


def _events(db: unit.Database, action: str) -> int:
    stmt = select(func.count()).select_from(Event).where(Event.action == action)
    return int(unit.read(db, lambda s: s.scalar(stmt)) or 0)


def _note(session: Session, action: str) -> None:
    record_event(session, "test", action, "test", None, at=datetime.now(UTC))


def test_a_unit_commits_and_a_read_or_a_discarded_unit_rolls_back(client: ApiClient) -> None:
    db: unit.Database = client.app.state.db
    unit.write(db, lambda s: _note(s, "test.kept"))

    def dry_run(s: Session) -> None:
        _note(s, "test.discarded")
        unit.discard(s)

    unit.write(db, dry_run)
    unit.read(db, lambda s: _note(s, "test.read"))
    assert [_events(db, a) for a in ("test.kept", "test.discarded", "test.read")] == [1, 0, 0]


def test_a_deadlock_runs_the_unit_again_from_the_start(client: ApiClient) -> None:
    db: unit.Database = client.app.state.db
    attempts: list[int] = []

    def flaky(s: Session) -> str:
        _note(s, "test.once")
        attempts.append(1)
        if len(attempts) == 1:
            raise _deadlock()
        return "done"

    assert unit.write(db, flaky) == "done"
    assert len(attempts) == 2
    assert _events(db, "test.once") == 1  # the first attempt's write was rolled back

    def always(s: Session) -> None:
        _note(s, "test.never")
        raise _deadlock()

    with pytest.raises(Contended):
        unit.write(db, always)
    assert _events(db, "test.never") == 0


def test_retries_exhausted_are_a_409_that_changed_nothing(
    client: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = client.post("/v1/hosts", json=host_body("busy", n=2, memory_mib=1 << 16)).json()
    d = client.post("/v1/domains", json=domain_body("busy", [2048, 2048], host_id=host["id"]))
    domain = client.get(f"/v1/domains/{d.json()['id']}").json()

    def collide(*_: Any, **__: Any) -> None:
        raise _deadlock()

    async def collide_on_loop(*_: Any, **__: Any) -> None:
        raise psycopg.errors.DeadlockDetected("deadlock detected")

    # On the event loop (PostgreSQL) the plain connection's deadlock hands the write to the
    # sessions' path, whose retries it then exhausts.
    monkeypatch.setattr("service.core.target_on_loop.load_target_state", collide_on_loop)
    monkeypatch.setattr("service.core.domains.set_target", collide)
    r = client.put(f"/v1/domains/{domain['id']}/target", json={"target_mib": 3072})
    assert r.status_code == 409, r.text
    assert "kept colliding" in r.json()["detail"] and r.headers["retry-after"] == "1"
    monkeypatch.undo()
    assert client.get(f"/v1/domains/{domain['id']}").json() == domain


def test_a_deadlock_driving_on_after_an_ack_is_retried_not_lost(
    client: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ack commits; driving its migration on then hits a deadlock. That follow-up is run
    again, so the migration moves on. (Retrying the whole route instead met an ack already
    recorded, answered it as a repeat and never drove the migration on.)"""
    one, sixteen, guest = seed_cluster(client)
    hosts = {one["id"]: one, sixteen["id"]: sixteen}
    body = {
        "domain_id": guest["id"],
        "destination_host_id": sixteen["id"],
        "strategy": "replug",
        "auto_advance": True,
    }
    mid = client.post("/v1/migrations", json=body).json()["id"]
    m = client.get(f"/v1/migrations/{mid}").json()
    real_drive = migrations.drive
    calls: list[str] = []

    def flaky_drive(session: Session, migration_id: str, *args: Any) -> str | None:
        calls.append(migration_id)
        if len(calls) == 1:
            raise _deadlock()
        return real_drive(session, migration_id, *args)

    for _ in range(4):  # the first phase with an agent step gets the deadlock
        pending = [s for s in m["steps"] if s["state"] == "pending"]
        pools = {s["vnode"]: s["target_mib"] for s in pending if s["actor"] == "guest"}
        if pools:
            report = [{"index": v, "actual_mib": t} for v, t in pools.items()]
            r = client.put("/v1/guest/balloon", token=guest["guest_token"], json={"vnodes": report})
            assert r.status_code == 200, r.text
        acks = [s for s in pending if s["actor"] == "agent"]
        for i, s in enumerate(acks):
            if i == len(acks) - 1 and not calls:
                monkeypatch.setattr(migrations, "drive", flaky_drive)
            host = hosts[s["host_id"]]
            r = client.post(
                f"/v1/agent/hosts/{host['id']}/steps/{s['id']}/ack",
                token=host["agent_token"],
                json={"ok": True},
            )
            assert r.status_code == 200, r.text
        before, m = m["state"], client.get(f"/v1/migrations/{mid}").json()
        if calls:
            assert calls == [mid, mid]  # the deadlocked drive, then its retry
            assert m["state"] != before, m  # and the migration moved on
            return
    pytest.fail("no phase had an agent step to acknowledge")
