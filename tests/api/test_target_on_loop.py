"""`PUT /v1/domains/{id}/target` on the event loop (`core/target_on_loop.py`, issue 25).

With the worker's durable plain connections open, a target write is one transaction there: it
answers and writes what the sessions' path answers and writes, its commit waits for the WAL
flush, and what it leaves (a raise under failover protection, a domain whose steps failed, no
such domain) is rolled back there and answered by the sessions' path.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Json
from sqlalchemy import bindparam, text, update

from service.db import raw
from service.db.plain_rows import PlainDomain, PlainHost, PlainPnode, PlainVnode
from service.db.tables import DOMAINS, EVENTS, HOSTS, PNODES, VNODES
from tests.api.client import ApiClient
from tests.api.factories import created, domain_body, host_body

GIB = 1024


@pytest.mark.parametrize(
    ("plain", "table", "skipped"),
    [
        (PlainHost, HOSTS, {"changed_xid"}),
        (PlainPnode, PNODES, set()),
        (PlainDomain, DOMAINS, set()),
        (PlainVnode, VNODES, set()),
    ],
)
def test_the_plain_rows_carry_every_column(plain: Any, table: Any, skipped: set[str]) -> None:
    """A column added to a table must be added to its plain row: the rules read any of them."""
    fields = {f.name for f in dataclasses.fields(plain)} - {"pnodes", "vnodes"}
    assert fields == {c.name for c in table.c} - skipped


def test_plain_statements_bind_as_sqlalchemy_would() -> None:
    """JSON values wrapped for psycopg, timestamps in UTC, an IN list one parameter per value:
    with or without an IN list in the same statement."""
    stmt = (
        update(EVENTS)
        .where(EVENTS.c.subject_id.in_(bindparam("b_ids", expanding=True)))
        .values(after=bindparam("b_after", type_=EVENTS.c.after.type))
    )
    when = datetime(2026, 12, 6, 12, tzinfo=timezone(timedelta(hours=2)))
    plain = update(EVENTS).values(after=bindparam("b_after", type_=EVENTS.c.after.type), at=when)
    for statement, values in ((stmt, {"b_ids": ["a", "b"]}), (plain, {})):
        _, params = raw.compiled(statement).expanded({"b_after": {"x": 1}, **values})
        after = next(v for k, v in params.items() if k.startswith("b_after"))
        assert isinstance(after, Json) and after.obj == {"x": 1}
    _, params = raw.compiled(stmt).expanded({"b_after": None, "b_ids": ["a", "b"]})
    assert (params["b_ids_1"], params["b_ids_2"]) == ("a", "b")
    _, params = raw.compiled(plain).expanded({"b_after": None})
    stamped = next(v for v in params.values() if isinstance(v, datetime))
    assert stamped == when and stamped.utcoffset() == timedelta(0)


def _record(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """What each transaction on a plain connection answered from now on: a class name, None
    (rolled back: the sessions' path answers), or the name of the exception it raised."""
    outcomes: list[object] = []
    transaction = raw.PlainConnections.transaction

    async def counted(self: raw.PlainConnections, work: Any) -> Any:
        try:
            out = await transaction(self, work)
        except Exception as exc:
            outcomes.append(f"raised {type(exc).__name__}")
            raise
        outcomes.append(None if out is None else type(out).__name__)
        return out

    monkeypatch.setattr(raw.PlainConnections, "transaction", counted)
    return outcomes


@pytest.fixture
def on_loop(pg_client: ApiClient, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """With the target writes' plain connections open (the client opens them as a worker's
    lifespan does): what each of their transactions answered (`_record`)."""
    assert pg_client.app.state.db.plain_writes.available
    return _record(monkeypatch)


def _pair(client: ApiClient, name: str) -> dict[str, Any]:
    """A host with a two-vnode domain on it."""
    host = created(client, "/v1/hosts", host_body(name, n=2, memory_mib=64 * GIB))
    body = domain_body(f"{name}-vm", [8 * GIB, 8 * GIB], host_id=host["id"], dynamic_min_mib=GIB)
    return {"host": host, "domain": created(client, "/v1/domains", body)}


def _state(client: ApiClient, pair: dict[str, Any]) -> dict[str, Any]:
    """What a write changed, without the ids, names and clocks that differ between hosts."""
    dom = client.get(f"/v1/domains/{pair['domain']['id']}").json()
    acc = client.get(f"/v1/hosts/{pair['host']['id']}/accounting").json()
    events = client.get(f"/v1/events?subject_id={dom['id']}&limit=100").json()["items"]
    steps = client.get(
        f"/v1/agent/hosts/{pair['host']['id']}/steps", token=pair["host"]["agent_token"]
    )
    return {
        "domain": _without(dom),
        "pnodes": acc["pnodes"],
        "events": [(e["action"], e["before"], e["after"]) for e in events[1:]],  # not created
        "steps": _without(steps.json()) if steps.status_code == 200 else steps.status_code,
    }


_VARY = {"id", "name", "host_id", "domain_id"}
_TIMES = {"created_at", "updated_at", "target_set_at", "at", "set_at"}


def _without(value: Any, key: str = "") -> Any:
    """Ids and names dropped; a timestamp's clock dropped, its offset kept (UTC on both
    paths)."""
    if isinstance(value, dict):
        return {k: _without(v, k) for k, v in value.items() if k not in _VARY}
    if isinstance(value, list):
        return [_without(v) for v in value]
    if key in _TIMES and isinstance(value, str):
        return re.search(r"(Z|[+-]\d\d:\d\d)$", value).group(1)  # type: ignore[union-attr]
    return value


def _target(client: ApiClient, pair: dict[str, Any], mib: int, **headers: str) -> Any:
    url = f"/v1/domains/{pair['domain']['id']}/target"
    return client.put(url, json={"target_mib": mib}, headers=headers)


@pytest.mark.postgres
def test_a_target_write_on_the_loop_answers_and_writes_as_the_sessions_path(
    pg_client: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = pg_client
    outcomes = _record(monkeypatch)
    plain = client.app.state.db.plain_writes
    sessions, loop = _pair(client, "sessions"), _pair(client, "loop")
    targets = (12 * GIB, 4 * GIB, 16 * GIB)  # a raise, a cut, a raise to the maximum
    client.call(plain.close)  # the sessions' path, as without the worker's lifespan
    answers = []
    for mib in targets:
        r = _target(client, sessions, mib)
        assert r.status_code == 200, r.text
        answers.append((_without(r.json()), r.headers["etag"]))
    assert outcomes == []
    before = _state(client, sessions)
    assert [e[0] for e in before["events"]] == ["domain.target_changed"] * 3
    client.call(plain.open)
    # Its commits wait for the WAL flush: a target moves memory.
    shown = client.call(lambda: plain.one_row(text("SHOW synchronous_commit"), {}))
    assert shown == ("on",)
    for (answer, etag), mib in zip(answers, targets, strict=True):
        r = _target(client, loop, mib)
        assert r.status_code == 200, r.text
        assert (_without(r.json()), r.headers["etag"]) == (answer, etag)
    assert outcomes == ["DomainOut"] * 3
    assert _state(client, loop) == before


@pytest.mark.postgres
def test_what_the_loop_leaves_is_answered_by_the_sessions_path(
    pg_client: ApiClient, on_loop: list[object]
) -> None:
    client = pg_client
    pair = _pair(client, "left")
    etag = client.get(f"/v1/domains/{pair['domain']['id']}").headers["etag"]
    # Refusals decided on the loop: rolled back there, nothing written, the same problems.
    stale = _target(client, pair, 8 * GIB, **{"If-Match": '"99"'})
    assert stale.status_code == 412, stale.text
    below = _target(client, pair, 512)
    assert below.status_code == 422, below.text
    assert below.headers["content-type"].startswith("application/problem+json")
    # raised inside the transaction: neither committed nor handed on
    assert on_loop == ["raised PreconditionFailed", "raised InvalidInput"]
    assert client.get(f"/v1/domains/{pair['domain']['id']}").headers["etag"] == etag
    # No such domain: the sessions' path says so.
    missing = client.put(
        "/v1/domains/00000000-0000-4000-8000-000000000000/target", json={"target_mib": 4096}
    )
    assert missing.status_code == 404, missing.text
    assert on_loop[2:] == [None]
    # A raise while failover protection is on: `failover.admit` runs in the sessions' path.
    protect = client.patch("/v1/cluster", json={"ha": {"host_failures": 1}})
    assert protect.status_code == 200, protect.text
    cut = _target(client, pair, 8 * GIB)
    assert cut.status_code == 200, cut.text
    raised = _target(client, pair, 10 * GIB)
    assert raised.status_code in (200, 409), raised.text
    assert on_loop[2:] == [None, "DomainOut", None]


@pytest.mark.postgres
def test_a_commit_on_the_loop_wakes_the_event_waiters(
    pg_client: ApiClient, on_loop: list[object]
) -> None:
    client = pg_client
    pair = _pair(client, "woken")
    pokes: list[int] = []
    plain = client.app.state.db.plain_writes
    assert client.app.state.event_hub.poke in plain.after_commit
    plain.after_commit.append(lambda: pokes.append(1))
    try:
        assert _target(client, pair, 4 * GIB).status_code == 200
        assert _target(client, pair, 512).status_code == 422  # rolled back: no poke
    finally:
        plain.after_commit.pop()
    assert on_loop == ["DomainOut", "raised InvalidInput"] and pokes == [1]


@pytest.mark.postgres
def test_a_write_that_waits_too_long_for_a_host_lock_takes_the_sessions_path(
    pg_client: ApiClient, on_loop: list[object]
) -> None:
    """A host held by another transaction: the write on the loop gives up after the durable
    pool's lock timeout (its connection is free again), and the sessions' path waits, then
    writes."""
    client = pg_client
    pair = _pair(client, "held")
    url = client.app.state.engine.url.set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False)) as holder:
        holder.execute("SELECT 1 FROM hosts WHERE id = %s FOR UPDATE", (pair["host"]["id"],))
        release = threading.Timer(raw.LOCK_TIMEOUT_MS / 1000 + 0.5, holder.rollback)
        release.start()
        try:
            r = _target(client, pair, 4 * GIB)
        finally:
            release.join()
    assert r.status_code == 200, r.text
    assert r.json()["memory"]["target_mib"] == 4 * GIB
    assert on_loop == ["raised Unavailable"]


@pytest.mark.postgres
def test_counters_the_loop_cannot_trust_send_the_write_to_the_whole_host(
    pg_client: ApiClient, on_loop: list[object]
) -> None:
    """Stored counters below the domain's own charges: the loop rolls back, and the sessions'
    path reads the host row by row and writes the counters its domains imply."""
    client = pg_client
    pair = _pair(client, "drifted")
    fair = client.get(f"/v1/hosts/{pair['host']['id']}/accounting").json()["pnodes"]
    with client.app.state.engine.begin() as conn:
        conn.execute(
            text("UPDATE pnodes SET allocated_mib = 0 WHERE host_id = :h"),
            {"h": pair["host"]["id"]},
        )
    r = _target(client, pair, 16 * GIB)  # its own target: the charges stay as they were
    assert r.status_code == 200, r.text
    assert on_loop == [None]
    after = client.get(f"/v1/hosts/{pair['host']['id']}/accounting").json()["pnodes"]
    assert [p["allocated_mib"] for p in after] == [p["allocated_mib"] for p in fair]
    assert all(p["allocated_mib"] > 0 for p in after)
