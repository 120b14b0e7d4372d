"""The protection's kept plan (service/core/failover_kept.py) against planning from scratch, on
PostgreSQL (the only backend where a plan is kept): over a chain of random changes on a small
cluster, every check through the kept plan, in a clean transaction (`GET /v1/cluster`) and in one
that has just written a change it will roll back (an admission's), says what a plan from scratch
over the same rows says; and a change let through is never one that breaks the plan."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from service.core import failover_kept as kept
from service.core import unit
from service.core.failover_inputs import load_inputs
from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body

GIB = 1024
S = kept.Settings(host_failures=1, selector=(("ha", "true"),), allow_spread=False)
pytestmark = pytest.mark.postgres
# The changes admission checks (a label patch, a delete, a host back to active are not).
CHECKED = ("create", "raise", "maintenance")


def _scratch(session: Session) -> bool:
    inputs = load_inputs(session, list(S.selector))
    plan = kept.plan_inputs(inputs, S)
    return kept.plan_verdict(inputs, plan).tolerated


def _agree(db: unit.Database) -> bool:
    """The kept plan's answer equals the plan from scratch, in the same transaction."""

    def work(session: Session) -> bool:
        got = kept.verdict(session, S).tolerated
        assert got == _scratch(session)
        return got

    return unit.run(db, work, read=True)


def _uncommitted(db: unit.Database, rng: random.Random, hosts: list[str]) -> None:
    """A change written and checked in the same transaction, then rolled back (an admission
    that is refused, or a unit that fails after its check)."""
    host = rng.choice(hosts)

    def work(session: Session) -> None:
        kind = rng.choice(("reserve", "label", "maintenance"))
        if kind == "reserve":
            session.execute(
                text(
                    "UPDATE pnodes SET reserved_mib = LEAST(reserved_mib + :m,"
                    " memory_mib - allocated_mib - claimed_mib) WHERE host_id = :h"
                ),
                {"m": rng.choice((2, 4, 8)) * GIB, "h": host},
            )
        elif kind == "label":
            session.execute(
                text(
                    "UPDATE domains SET labels = CAST(:l AS json) WHERE id = "
                    "(SELECT id FROM domains WHERE host_id = :h ORDER BY id LIMIT 1)"
                ),
                {"l": rng.choice(('{"ha": "true"}', "{}")), "h": host},
            )
        else:
            session.execute(
                text("UPDATE hosts SET state = 'maintenance' WHERE id = :h"), {"h": host}
            )
        assert kept.verdict(session, S).tolerated == _scratch(session)
        unit.discard(session)

    unit.run(db, work)


def _change(client: ApiClient, rng: random.Random, hosts: list[str], n: int) -> dict[str, Any]:
    """One change through the API, checked by admission: (response, what it was)."""
    doms = client.get("/v1/domains?limit=200").json()["items"]
    kinds = ["create", "create", "maintenance", "active"] + (
        ["delete", "raise", "label"] if doms else []
    )
    kind = rng.choice(kinds)
    if kind == "create":
        sizes = [rng.choice((2, 4, 6)) * GIB for _ in range(rng.randint(1, 2))]
        body = domain_body(f"d{n}", sizes, host_id=rng.choice(hosts))
        body["memory"]["dynamic_min_mib"] = sum(sizes) // 2
        if rng.random() < 0.7:
            body["labels"] = {"ha": "true"}
        r = client.post("/v1/domains", json=body)
    elif kind in ("maintenance", "active"):
        r = client.patch(f"/v1/hosts/{rng.choice(hosts)}", json={"state": kind})
    else:
        d = rng.choice(doms)
        if kind == "delete":
            r = client.delete(f"/v1/domains/{d['id']}")
        elif kind == "raise":
            mem = d["memory"]
            up = min(mem["dynamic_max_mib"], mem["target_mib"] + 2 * GIB)
            r = client.put(f"/v1/domains/{d['id']}/target", json={"target_mib": up})
        else:
            labels = {"ha": "true"} if not d["labels"] else {}
            r = client.patch(f"/v1/domains/{d['id']}", json={"labels": labels})
    return {"kind": kind, "status": r.status_code, "body": r.text}


@pytest.mark.parametrize("diff_hosts", [64, 0], ids=["checked", "moved-forward-first"])
def test_kept_plan_agrees_with_planning_from_scratch(
    pg_client: ApiClient, postgres_db_url: str, diff_hosts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``diff_hosts`` 0: every check first moves the kept plan forward in a session of its own
    (or builds it again), as a worker does when many hosts changed."""
    monkeypatch.setattr(kept, "DIFF_HOSTS", diff_hosts)
    kept.forget()
    rng = random.Random(26)
    hosts = []
    for i in range(5):
        r = pg_client.post("/v1/hosts", json=host_body(f"h{i}", n=2, memory_mib=16 * GIB))
        hosts.append(str(r.json()["id"]))
    r = pg_client.patch(
        "/v1/cluster", json={"ha": {"host_failures": 1, "label_selector": "ha=true"}}
    )
    assert r.status_code == 200, r.text
    db = unit.open_database(postgres_db_url)
    older: list[dict[str, kept.Kept]] = []  # other workers' kept plans, as of earlier
    built, changes = kept.COUNTS["built"], kept.COUNTS["changes"]
    seen: dict[tuple[str, int], int] = {}
    try:
        for n in range(60):
            before = _agree(db)
            flagged = pg_client.get("/v1/cluster").json()["ha"]["overcommitted"]
            done = _change(pg_client, rng, hosts, n)
            seen[done["kind"], done["status"]] = seen.get((done["kind"], done["status"]), 0) + 1
            assert done["status"] < 500, done
            after = _agree(db)
            if done["status"] == 409 and "would-break" in done["body"]:
                assert not flagged and not after  # refused: it would have broken the plan
            elif done["status"] < 300 and done["kind"] in CHECKED and before and not flagged:
                assert after, done  # a checked change let through keeps the plan
            _uncommitted(db, rng, hosts)
            if rng.random() < 0.3:
                older.append(dict(kept._KEPT))
            if older and rng.random() < 0.3:  # a worker whose plan is older
                kept._KEPT.clear()
                kept._KEPT.update(rng.choice(older))
        # the chain refused changes and let others through, mostly answered by check_change
        assert any(k[1] == 409 for k in seen) and any(k[1] < 300 for k in seen), seen
        assert kept.COUNTS["changes"] - changes > 5 * (kept.COUNTS["built"] - built)
    finally:
        db.engine.dispose()
        kept.forget()
