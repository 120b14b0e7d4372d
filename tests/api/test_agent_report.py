"""The host agent's batch report (POST /v1/agent/hosts/{id}/report): status only, one request
for the host's free memory and every domain's per-vnode actual size."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from service.core import agent_report
from service.db import raw
from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body
from tests.api.statements import count_statements


def _setup(client: ApiClient) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    host = client.post("/v1/hosts", json=host_body("kvm-1", n=2)).json()
    other = client.post("/v1/hosts", json=host_body("kvm-2", n=2)).json()
    dom = client.post(
        "/v1/domains",
        json=domain_body("vm-1", [4096, 4096], target_mib=8192, host_id=host["id"]),
    ).json()
    return host, other, dom


def _settling(client: ApiClient) -> tuple[dict[str, Any], dict[str, Any], list[int], Any]:
    """A host with one 2-vnode domain, each pnode's free MiB as accounted, and the first report
    of the domain's sizes (every pool at its target, every pnode as accounted)."""
    host, _, dom = _setup(client)
    sizes = {"domain_id": dom["id"], "vnodes": [{"index": i, "actual_mib": 4096} for i in (0, 1)]}
    acc = client.get(f"/v1/hosts/{host['id']}/accounting").json()
    free = [p["capacity_mib"] - p["allocated_mib"] for p in acc["pnodes"]]
    first = {
        "pnodes": [{"index": i, "free_mib": f} for i, f in enumerate(free)],
        "domains": [sizes],
    }
    return host, dom, free, first


def _report(client: ApiClient, host: dict[str, Any], body: dict[str, Any]) -> Any:
    return client.post(f"/v1/agent/hosts/{host['id']}/report", token=host["agent_token"], json=body)


def test_report_records_status_without_moving_versions(client: ApiClient) -> None:
    host, _, dom = _setup(client)
    before = client.get(f"/v1/domains/{dom['id']}")
    host_before = client.get(f"/v1/hosts/{host['id']}")
    stranger = str(uuid.uuid4())
    r = _report(
        client,
        host,
        {
            "pnodes": [{"index": 0, "free_mib": 60000}, {"index": 1, "free_mib": 61000}],
            "domains": [
                {"domain_id": dom["id"], "vnodes": [{"index": 0, "actual_mib": 4096}]},
                {"domain_id": stranger, "vnodes": []},
            ],
        },
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["domains_accepted"] == 1
    assert out["unknown_domains"] == [stranger]  # a guest numa-balloon does not manage
    assert [d["observed_free_mib"] for d in out["drift"]] == [60000, 61000]
    after = client.get(f"/v1/domains/{dom['id']}")
    assert after.headers["etag"] == before.headers["etag"]
    assert after.json()["version"] == before.json()["version"]
    assert [v["actual_mib"] for v in after.json()["vnodes"]] == [4096, None]
    host_after = client.get(f"/v1/hosts/{host['id']}")
    assert host_after.headers["etag"] == host_before.headers["etag"]
    acc = client.get(f"/v1/hosts/{host['id']}/accounting").json()
    assert [p["observed_free_mib"] for p in acc["pnodes"]] == [60000, 61000]


def test_report_completes_pool_steps_and_lowers_the_charge(client: ApiClient) -> None:
    host, _, dom = _setup(client)
    r = client.put(f"/v1/domains/{dom['id']}/target", json={"target_mib": 4096})
    assert r.status_code == 200, r.text
    targets = [v["target_mib"] for v in r.json()["vnodes"]]
    steps = client.get(f"/v1/agent/hosts/{host['id']}/steps", token=host["agent_token"]).json()
    assert steps["items"], "a lower target queues pool steps"
    version = client.get(f"/v1/domains/{dom['id']}").json()["version"]
    body = {
        "domains": [
            {
                "domain_id": dom["id"],
                "vnodes": [{"index": i, "actual_mib": t} for i, t in enumerate(targets)],
            }
        ]
    }
    assert _report(client, host, body).status_code == 200
    left = client.get(f"/v1/agent/hosts/{host['id']}/steps", token=host["agent_token"]).json()
    assert left["items"] == []
    acc = client.get(f"/v1/hosts/{host['id']}/accounting").json()
    assert sum(p["allocated_mib"] for p in acc["pnodes"]) == 4096
    assert client.get(f"/v1/domains/{dom['id']}").json()["version"] == version
    events = client.get("/v1/events?since=0").json()["items"]
    acked = [e for e in events if e["action"] == "domain.actual_observed"]
    assert acked and acked[-1]["actor"] == f"agent:{host['id']}"


def test_report_never_raises_a_charge_above_the_target(client: ApiClient) -> None:
    host, _, dom = _setup(client)
    client.put(f"/v1/domains/{dom['id']}/target", json={"target_mib": 4096})
    body = {
        "domains": [
            {
                "domain_id": dom["id"],
                "vnodes": [{"index": 0, "actual_mib": 4096}, {"index": 1, "actual_mib": 0}],
            }
        ]
    }
    assert _report(client, host, body).status_code == 200
    vnodes = client.get(f"/v1/domains/{dom['id']}").json()["vnodes"]
    assert vnodes[0]["actual_mib"] == 2048  # clamped to its target: nothing was observed before


def test_bad_indices_are_422_and_change_nothing(client: ApiClient) -> None:
    host, _, dom = _setup(client)
    for body, loc in (
        ({"pnodes": [{"index": 2, "free_mib": 1}]}, ["body", "pnodes", 0, "index"]),
        (
            {
                "pnodes": [{"index": 0, "free_mib": 5}],
                "domains": [{"domain_id": dom["id"], "vnodes": [{"index": 2, "actual_mib": 1}]}],
            },
            ["body", "domains", 0, "vnodes", 0, "index"],
        ),
        (
            {
                "domains": [
                    {
                        "domain_id": dom["id"],
                        "vnodes": [{"index": 0, "actual_mib": 1}, {"index": 0, "actual_mib": 2}],
                    }
                ]
            },
            ["body", "domains", 0, "vnodes", 1, "index"],
        ),
    ):
        r = _report(client, host, body)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert loc in [e["loc"] for e in r.json()["errors"]]
    acc = client.get(f"/v1/hosts/{host['id']}/accounting").json()
    assert [p["observed_free_mib"] for p in acc["pnodes"]] == [None, None]
    assert client.get(f"/v1/domains/{dom['id']}").json()["vnodes"][0]["actual_mib"] is None


def test_another_hosts_agent_is_refused(client: ApiClient) -> None:
    host, other, _ = _setup(client)
    r = client.post(
        f"/v1/agent/hosts/{host['id']}/report", token=other["agent_token"], json={"pnodes": []}
    )
    assert r.status_code == 403


def test_a_settled_report_writes_only_the_observation(client: ApiClient) -> None:
    """The report an agent sends every 10 s once its guests are at their targets: answered from
    plain rows in a fixed number of statements, with no event and no version moved, while a
    report that moves the drift flag still takes the full path and records it."""
    host, dom, free, first = _settling(client)
    assert _report(client, host, first).status_code == 200  # the first report of the sizes
    events = len(client.get("/v1/events?since=0&limit=500").json()["items"])
    before = client.get(f"/v1/domains/{dom['id']}")
    steady = dict(first, pnodes=[{"index": 0, "free_mib": free[0] - 100}])
    n, r = count_statements(client, lambda: _report(client, host, steady))
    assert r.status_code == 200, r.text
    # the token; the host stamped (its lock), its pnodes, its vnodes; one observed free MiB.
    # PostgreSQL reads the pnodes and the vnodes in one statement (as arrays): one fewer.
    postgres = client.app.state.engine.dialect.name == "postgresql"
    assert n == (4 if postgres else 5), n
    out = r.json()
    assert out["domains_accepted"] == 1 and not out["drift_flagged"]
    assert [p["drift_mib"] for p in out["drift"]] == [-100, 0]
    assert len(client.get("/v1/events?since=0&limit=500").json()["items"]) == events
    after = client.get(f"/v1/domains/{dom['id']}")
    assert after.headers["etag"] == before.headers["etag"]
    assert [v["actual_mib"] for v in after.json()["vnodes"]] == [4096, 4096]
    acc = client.get(f"/v1/hosts/{host['id']}/accounting").json()
    assert [p["observed_free_mib"] for p in acc["pnodes"]] == [free[0] - 100, free[1]]
    # Far off: the flag moves, with its event, through the full path.
    off = dict(first, pnodes=[{"index": 1, "free_mib": free[1] - 5000}])
    out = _report(client, host, off).json()
    assert out["drift_flagged"] and out["drift"][1]["drift_mib"] == -5000
    actions = [e["action"] for e in client.get("/v1/events?since=0&limit=500").json()["items"]]
    assert actions[-1] == "host.drift_flagged"


@pytest.mark.postgres
def test_a_settled_report_on_the_event_loop_answers_as_the_sessions_path(
    pg_client: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the worker's plain connections open (as its lifespan opens them), a settled report
    is answered on the event loop with what the sessions' path answers and writes; a report
    that is not settled and a drift that moves the flag are rolled back there and take the
    sessions' path."""
    client = pg_client
    host, dom, free, first = _settling(client)
    steady = dict(first, pnodes=[{"index": 0, "free_mib": free[0] - 100}])
    assert _report(client, host, first).status_code == 200  # sessions: the pool is not open
    on_sessions = _report(client, host, steady)
    assert on_sessions.status_code == 200, on_sessions.text
    plain = client.app.state.db.plain
    client.call(plain.open)
    try:
        outcomes: list[object] = []
        transaction = raw.PlainConnections.transaction

        async def counted(self: raw.PlainConnections, work: Any) -> Any:
            out = await transaction(self, work)
            outcomes.append(None if out is None else type(out).__name__)
            return out

        monkeypatch.setattr(raw.PlainConnections, "transaction", counted)
        events = len(client.get("/v1/events?since=0&limit=500").json()["items"])
        etag = client.get(f"/v1/domains/{dom['id']}").headers["etag"]
        again = _report(client, host, steady)
        assert again.status_code == 200, again.text
        assert again.json() == on_sessions.json()
        moved = dict(steady, pnodes=[{"index": 0, "free_mib": free[0] - 300}])
        assert _report(client, host, moved).json()["drift"][0]["drift_mib"] == -300
        assert outcomes == ["AgentReportOut", "AgentReportOut"]  # both on the event loop
        acc = client.get(f"/v1/hosts/{host['id']}/accounting").json()
        assert [p["observed_free_mib"] for p in acc["pnodes"]] == [free[0] - 300, free[1]]
        assert len(client.get("/v1/events?since=0&limit=500").json()["items"]) == events
        assert client.get(f"/v1/domains/{dom['id']}").headers["etag"] == etag
        # Not settled: a pool moved; the flag moves. Each rolled back, then answered by the
        # sessions' path.
        smaller = dict(
            steady, domains=[dict(first["domains"][0], vnodes=[{"index": 0, "actual_mib": 3072}])]
        )
        assert _report(client, host, smaller).status_code == 200
        vnodes = client.get(f"/v1/domains/{dom['id']}").json()["vnodes"]
        assert [v["actual_mib"] for v in vnodes] == [3072, 4096]
        off = dict(steady, domains=[], pnodes=[{"index": 1, "free_mib": free[1] - 5000}])
        assert _report(client, host, off).json()["drift_flagged"]
        actions = [e["action"] for e in client.get("/v1/events?since=0&limit=500").json()["items"]]
        assert actions[-1] == "host.drift_flagged"
        assert outcomes[2:] == [None, None]
        # A report of more domains than the loop decides goes straight to the thread pool.
        monkeypatch.setattr(agent_report, "LOOP_MAX_DOMAINS", 0)
        settled_again = _report(client, host, steady)
        assert settled_again.status_code == 200, settled_again.text
        assert len(outcomes) == 4
    finally:
        client.call(plain.close)
