"""Issue 27 item 2: a failed pool step was never tried again. The agent acknowledged it
`ok=false`, the service recorded `step.failed` and nothing happened: ~20 s later the domain was
flagged uncooperative at its old size, and the same target sent again issued no step.

Now a failed pool step of a target change is issued again as a new step (attempt + 1), shown to
agents after a doubling backoff, up to `step_retry_attempts` attempts; each failure is an event
and stands on the domain (`step_failure`) until a pool step is done or the target changes; and a
target sent again re-issues what the pools have not done."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from service.app import create_app
from service.settings import Settings
from tests.api.client import ApiClient, api_client
from tests.api.factories import domain_body, host_body
from tests.conftest import ADMIN_TOKEN


def _client(db_url: str, **settings: Any) -> Iterator[ApiClient]:
    app = create_app(Settings(database_url=db_url, admin_token=ADMIN_TOKEN, **settings))
    with api_client(app, ADMIN_TOKEN) as c:
        yield c
    app.state.engine.dispose()


@pytest.fixture
def client(db_url: str) -> Iterator[ApiClient]:
    yield from _client(db_url, step_retry_attempts=3, step_retry_backoff_s=0)


@pytest.fixture
def slow_client(db_url: str) -> Iterator[ApiClient]:
    yield from _client(db_url, step_retry_backoff_s=3600, step_retry_max_backoff_s=7200)


def _shrunk(client: ApiClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """A domain of 2 x 4096 MiB reported whole by the host agent, then asked down to 4096."""
    host = client.post("/v1/hosts", json=host_body("kvm-1", n=2)).json()
    body = domain_body("vm-1", [4096, 4096], target_mib=8192, host_id=host["id"])
    dom = client.post("/v1/domains", json=body).json()
    report = {
        "domains": [
            {
                "domain_id": dom["id"],
                "vnodes": [{"index": 0, "actual_mib": 4096}, {"index": 1, "actual_mib": 4096}],
            }
        ]
    }
    url = f"/v1/agent/hosts/{host['id']}/report"
    assert client.post(url, token=host["agent_token"], json=report).status_code == 200
    r = client.put(f"/v1/domains/{dom['id']}/target", json={"target_mib": 4096})
    assert r.status_code == 200, r.text
    return host, dom


def _steps(client: ApiClient, host: dict[str, Any]) -> list[dict[str, Any]]:
    url = f"/v1/agent/hosts/{host['id']}/steps"
    items: list[dict[str, Any]] = client.get(url, token=host["agent_token"]).json()["items"]
    return items


def _fail(client: ApiClient, host: dict[str, Any], step: dict[str, Any]) -> None:
    url = f"/v1/agent/hosts/{host['id']}/steps/{step['id']}/ack"
    body = {"ok": False, "detail": "libvirt: memory not found"}
    r = client.post(url, token=host["agent_token"], json=body)
    assert r.status_code == 200, r.text


def _events(client: ApiClient, action: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = client.get("/v1/events", params={"limit": 500}).json()["items"]
    return [e for e in events if e["action"] == action]


def test_a_failed_pool_step_is_retried_a_bounded_number_of_times(client: ApiClient) -> None:
    host, dom = _shrunk(client)
    first = next(s for s in _steps(client, host) if s["vnode"] == 0)
    assert first["attempt"] == 1
    for attempt in (1, 2, 3):
        step = next(s for s in _steps(client, host) if s["vnode"] == 0)
        assert (step["op"], step["attempt"], step["mib"]) == (first["op"], attempt, first["mib"])
        _fail(client, host, step)
        failure = client.get(f"/v1/domains/{dom['id']}").json()["step_failure"]
        assert failure["attempt"] == attempt and failure["max_attempts"] == 3
        assert failure["detail"] == "libvirt: memory not found" and failure["vnode"] == 0
        assert (failure["retry_at"] is None) == (attempt == 3)
    assert [s["vnode"] for s in _steps(client, host)] == [1]  # vnode 0's attempts are spent
    assert len(_events(client, "step.retry_scheduled")) == 2
    (spent,) = _events(client, "step.retries_exhausted")
    assert spent["subject_id"] == dom["id"] and spent["after"]["attempt"] == 3

    # The same target sent again re-issues what the pool has not done, from attempt 1.
    again = client.put(f"/v1/domains/{dom['id']}/target", json={"target_mib": 4096})
    assert again.status_code == 200 and again.json()["step_failure"] is None
    steps = _steps(client, host)
    assert sorted((s["vnode"], s["attempt"], s["mib"]) for s in steps) == [
        (0, 1, first["mib"]),
        (1, 1, first["mib"]),
    ]


def test_a_retry_waits_out_its_backoff_and_a_done_step_clears_the_failure(
    slow_client: ApiClient,
) -> None:
    client = slow_client
    host, dom = _shrunk(client)
    step = next(s for s in _steps(client, host) if s["vnode"] == 0)
    _fail(client, host, step)
    assert [s["vnode"] for s in _steps(client, host)] == [1]  # the retry is not due yet
    failure = client.get(f"/v1/domains/{dom['id']}").json()["step_failure"]
    assert failure["retry_at"] > failure["failed_at"]
    # The pool reaches its target anyway (the report completes the pending retry): cleared.
    report = {
        "domains": [
            {
                "domain_id": dom["id"],
                "vnodes": [{"index": 0, "actual_mib": 2048}, {"index": 1, "actual_mib": 4096}],
            }
        ]
    }
    url = f"/v1/agent/hosts/{host['id']}/report"
    assert client.post(url, token=host["agent_token"], json=report).status_code == 200
    assert client.get(f"/v1/domains/{dom['id']}").json()["step_failure"] is None
