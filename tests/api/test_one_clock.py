"""One clock per request (#23 item 4): every row and event an operation writes carries the
request's `now`, the app's injected clock, never the wall clock read somewhere deeper.

The app runs on a fixed clock years away from the wall clock; after each operation the rows it
wrote or changed are read back and their timestamps compared with that clock exactly. Then the
clock moves and the next operations must stamp the new instant, row by row.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.app import create_app
from service.db.models import (
    Claim,
    ClusterSettings,
    Domain,
    Event,
    Host,
    IdempotencyRecord,
    Migration,
    Step,
    Token,
)
from service.settings import Settings
from tests.api.client import ApiClient, api_client
from tests.api.factories import domain_body, host_body
from tests.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.postgres

T0 = datetime(2031, 3, 14, 15, 9, 26, tzinfo=UTC)


class FixedClock:
    """The app's clock: an instant the test sets, far from the wall clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def pg(postgres_db_url: str, clock: FixedClock) -> Iterator[ApiClient]:
    settings = Settings(database_url=postgres_db_url, admin_token=ADMIN_TOKEN)
    app: FastAPI = create_app(settings, clock=clock)
    with api_client(app, ADMIN_TOKEN) as c:
        yield c
    app.state.engine.dispose()


def _stamps(session: Session, model: Any, *columns: str) -> set[datetime]:
    """Every non-null value of these timestamp columns over the model's rows."""
    out: set[datetime] = set()
    for row in session.scalars(select(model)):
        out |= {getattr(row, c) for c in columns if getattr(row, c) is not None}
    return out


def _ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def test_every_row_and_event_of_a_request_carries_its_now(pg: ApiClient, clock: FixedClock) -> None:
    a = _ok(pg.post("/v1/hosts", json=host_body("clock-a", n=2, memory_mib=16384)), 201)
    b = _ok(
        pg.post(
            "/v1/hosts",
            json=host_body("clock-b", n=2, memory_mib=16384),
            headers={"Idempotency-Key": "clock-b"},
        ),
        201,
    )
    dom = _ok(
        pg.post("/v1/domains", json=domain_body("clock-vm", [2048, 2048], host_id=a["id"])), 201
    )
    _ok(pg.put(f"/v1/domains/{dom['id']}/target", json={"target_mib": 3072}))
    report = {
        "pnodes": [{"index": 0, "free_mib": 6000}, {"index": 1, "free_mib": 6000}],
        "domains": [
            {"domain_id": dom["id"], "vnodes": [{"index": 0, "actual_mib": 2048}]},
        ],
    }
    _ok(pg.post(f"/v1/agent/hosts/{a['id']}/report", token=a["agent_token"], json=report))
    _ok(pg.patch(f"/v1/hosts/{b['id']}", json={"labels": {"rack": "r1"}}))
    _ok(pg.post(f"/v1/domains/{dom['id']}/guest-token"))
    body = {"domain_id": dom["id"], "destination_host_id": b["id"]}
    m = _ok(pg.post("/v1/migrations", json=body), 201)
    _ok(pg.post("/v1/cluster/worst-case-template"))

    factory = pg.app.state.sessionmaker
    with factory() as s:
        assert _stamps(s, Event, "at") == {T0}
        assert _stamps(s, Host, "created_at", "updated_at") == {T0}
        assert _stamps(s, Domain, "created_at", "updated_at", "target_set_at") == {T0}
        assert _stamps(s, Migration, "created_at", "updated_at", "progress_at") == {T0}
        assert _stamps(s, Step, "created_at", "acked_at") == {T0}
        assert _stamps(s, Claim, "created_at") == {T0}
        assert _stamps(s, Token, "created_at", "revoked_at") == {T0}
        assert _stamps(s, IdempotencyRecord, "created_at") == {T0}
        assert _stamps(s, ClusterSettings, "updated_at") == {T0}
        n_events = len(s.scalars(select(Event)).all())
        assert n_events >= 9  # one per operation at least: none was left out of the check

    # The clock moves: what the next requests change carries the new instant, and only that.
    t1 = clock.now = T0 + timedelta(seconds=7)  # within the claims' lease
    assert _ok(pg.post(f"/v1/migrations/{m['id']}/advance"))["state"] == "preparing"
    _ok(pg.post(f"/v1/migrations/{m['id']}/abort"))  # rolled back: claims released
    _ok(pg.patch(f"/v1/domains/{dom['id']}", json={"labels": {"team": "t"}}))
    _ok(pg.patch(f"/v1/hosts/{a['id']}", json={"state": "maintenance"}))
    _ok(pg.post("/v1/cluster/worst-case-template"))
    with factory() as s:
        later = s.scalars(select(Event).order_by(Event.seq).offset(n_events)).all()
        assert later and {e.at for e in later} == {t1}
        assert {e.action for e in later} >= {
            "migration.advanced",
            "migration.aborted",
            "domain.updated",
            "host.state_changed",
            "cluster.template_derived",
        }
        assert s.get_one(Migration, m["id"]).updated_at == t1
        assert s.get_one(Domain, dom["id"]).updated_at == t1
        assert s.get_one(Host, a["id"]).updated_at == t1
        assert s.get_one(Host, b["id"]).updated_at == T0  # untouched since
        assert s.get_one(ClusterSettings, 1).updated_at == t1
        assert not s.scalars(select(Claim)).all()  # released by the abort at t1
        cancelled = s.scalars(select(Step).where(Step.state == "cancelled")).all()
        assert cancelled and {st.created_at for st in cancelled} == {T0}
