"""The client against a real uvicorn (SQLite and PostgreSQL): the API's habits, for real.

Faults (503s, answers lost after the server acted, nobody listening) are injected by a
transport wrapped around the real one, so the server sees exactly what the client retries.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable

import httpx
import pytest

from numa_balloon_client import (
    AsyncClient,
    Client,
    Conflict,
    ConnectionFailed,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    RetryPolicy,
    StepFailed,
)
from numa_balloon_testing.server import Server, free_port
from tests.client.conftest import small_domain, two_socket
from tests.client.sim import Sim
from tests.conftest import ADMIN_TOKEN


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Faulty(httpx.BaseTransport):
    """The real transport, with `fault(n, request)` deciding per attempt n (from 0) to answer
    503 itself, forward and then lose the answer (ReadError), or just forward (None)."""

    def __init__(self, fault: Callable[[int, httpx.Request], str | None]) -> None:
        self.real = httpx.HTTPTransport()
        self.fault = fault
        self.seen: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        n = len(self.seen)
        self.seen.append(request)
        what = self.fault(n, request)
        if what == "503":
            return httpx.Response(503, json={"type": "x", "title": "busy", "status": 503})
        response = self.real.handle_request(request)
        if what == "lose":
            response.read()
            raise httpx.ReadError("answer lost", request=request)
        return response

    def close(self) -> None:
        self.real.close()


def faulty_client(server: Server, fault: Callable[[int, httpx.Request], str | None]) -> Client:
    sleeps: list[float] = []
    nb = Client(server.url, ADMIN_TOKEN, transport=Faulty(fault), sleep=sleeps.append)
    nb.slept = sleeps  # type: ignore[attr-defined]
    return nb


def test_a_create_whose_answer_is_lost_is_retried_with_the_same_key(
    server: Server, nb: Client
) -> None:
    name = uniq("lost")
    with faulty_client(server, lambda n, r: "lose" if n == 0 else None) as faulty:
        host = faulty.create_host(two_socket(name))
    sent = faulty.http._transport.seen  # type: ignore[attr-defined]
    keys = {r.headers["Idempotency-Key"] for r in sent}
    assert len(sent) == 2 and len(keys) == 1  # one key, reused by the retry
    assert [h.id for h in nb.iter_hosts() if h.name == name] == [host.id]  # created once
    assert len(faulty.slept) == 1  # type: ignore[attr-defined]


def test_503_is_retried_with_backoff_then_raised(server: Server) -> None:
    with faulty_client(server, lambda n, r: "503" if n < 2 else None) as nb:
        assert nb.get_cluster().block_mib >= 1
    assert len(nb.slept) == 2 and all(0 <= s <= 3 for s in nb.slept)  # type: ignore[attr-defined]
    with faulty_client(server, lambda n, r: "503") as always, pytest.raises(Exception) as info:
        always.get_cluster()
    assert getattr(info.value, "status", None) == 503
    assert len(always.http._transport.seen) == RetryPolicy().attempts  # type: ignore[attr-defined]


def test_4xx_is_never_retried_and_a_lost_advance_is_not_repeated(server: Server) -> None:
    with faulty_client(server, lambda n, r: None) as nb, pytest.raises(NotFound):
        nb.get_host(str(uuid.uuid4()))
    assert len(nb.http._transport.seen) == 1  # type: ignore[attr-defined]
    with faulty_client(server, lambda n, r: "lose") as lossy, pytest.raises(ConnectionFailed):
        lossy.advance_migration(str(uuid.uuid4()))  # a POST without a key: may not repeat
    assert len(lossy.http._transport.seen) == 1  # type: ignore[attr-defined]


def test_nobody_listening_is_connection_failed_after_the_retries() -> None:
    sleeps: list[float] = []
    with (
        Client(f"http://127.0.0.1:{free_port()}", "t", sleep=sleeps.append) as nb,
        pytest.raises(ConnectionFailed),
    ):
        nb.get_cluster()
    assert len(sleeps) == RetryPolicy().attempts - 1


def test_problems_are_typed_and_located(nb: Client) -> None:
    bad = two_socket(uniq("bad"))
    bad["distances"] = [[10, 21], [21, 11]]
    with pytest.raises(InvalidInput) as info:
        nb.create_host(bad)
    assert info.value.status == 422 and info.value.type.endswith("validation-error")
    assert [i.loc for i in info.value.errors] == [("body", "distances", 1, 1)]
    name = uniq("dup")
    nb.create_host(two_socket(name))
    with pytest.raises(Conflict) as dup:
        nb.create_host(two_socket(name))
    assert dup.value.status == 409 and name in dup.value.detail


def test_iterators_walk_every_page(nb: Client) -> None:
    prefix = uniq("page")
    made = {nb.create_host(two_socket(f"{prefix}-{i}")).id for i in range(5)}
    page = nb.list_hosts(limit=2)
    assert len(page.items) == 2 and page.next_cursor is not None
    assert made <= {h.id for h in nb.iter_hosts(limit=2)}


def test_if_match_uses_the_last_etag_and_a_stale_one_is_412(server: Server, nb: Client) -> None:
    host = nb.create_host(two_socket(uniq("etag")))
    nb.get_host(host.id)
    with Client(server.url, ADMIN_TOKEN) as other:
        other.set_host_state(host.id, "maintenance")  # changes the version behind nb's back
    with pytest.raises(PreconditionFailed):
        nb.set_host_state(host.id, "offline", if_match=True)
    nb.get_host(host.id)  # re-read: the new ETag
    assert nb.set_host_state(host.id, "offline", if_match=True).state == "offline"


def _migration_setup(nb: Client) -> tuple[Sim, str, str]:
    a = nb.create_host(two_socket(uniq("src")))
    b = nb.create_host(two_socket(uniq("dst")))
    d = nb.create_domain(small_domain(uniq("vm"), a.id))
    sim = Sim(nb, agents={a.id: a.agent_token, b.id: b.agent_token}, guests=[d.guest_token])
    return sim, d.id, b.id


def test_wait_for_migration_follows_it_to_completed(nb: Client) -> None:
    sim, domain_id, dst = _migration_setup(nb)
    mig = nb.start_migration(domain_id, dst, "replug")
    seen: list[str] = []
    with sim:
        final = nb.wait_for_migration(
            mig.id, advance=True, timeout_s=60, on_update=lambda m: seen.append(m.state)
        )
    assert final.state == "completed"
    assert {"planned", "preparing", "settling"} <= set(seen)
    assert nb.get_domain(domain_id).host_id == dst
    assert sim.acked > 0


def test_a_failed_step_stops_the_wait(nb: Client) -> None:
    """The source agent says the live migration failed: the service fails the migration at once
    (the domain stays on its source), and the wait ends there with the reason."""
    sim, domain_id, dst = _migration_setup(nb)
    sim.fail_op = "migrate"
    mig = nb.start_migration(domain_id, dst)
    with sim:
        try:  # the client may see the failed step a moment before the service acts on it
            nb.wait_for_migration(mig.id, advance=True, timeout_s=60)
        except StepFailed as exc:
            assert exc.step.op == "migrate"
    done = nb.wait_for_migration(mig.id, timeout_s=30)
    assert done.state == "failed"
    assert "migrate" in (done.reason or "")


def test_poll_events_falls_back_to_sleeping_when_wait_is_ignored(server: Server) -> None:
    """A server without `wait` answers at once, empty: the client sleeps `poll_s` itself. A
    server with it holds the request instead, and the client does not sleep on top."""
    slept: list[float] = []
    with Client(server.url, ADMIN_TOKEN, sleep=slept.append) as nb:
        head = max((e.seq for e in nb.iter_events()), default=0)
        started = time.monotonic()
        events = nb.poll_events(head + 10**6, wait_s=4, poll_s=0.25)
        held_s = time.monotonic() - started
    assert events == []
    assert slept == [0.25] if held_s < 2 else slept == []


def test_poll_events_returns_an_event_that_happens_while_waiting(
    server: Server, nb: Client
) -> None:
    head = max((e.seq for e in nb.iter_events()), default=0)
    name = uniq("late")
    timer = threading.Timer(0.5, lambda: nb.with_token(ADMIN_TOKEN).create_host(two_socket(name)))
    timer.start()
    try:
        deadline = time.monotonic() + 30
        seen: list[str] = []
        while not seen and time.monotonic() < deadline:
            seen = [e.action for e in nb.poll_events(head, wait_s=5, poll_s=0.1)]
    finally:
        timer.join()
    assert seen == ["host.created"]


def test_async_client_does_the_same(server: Server) -> None:
    async def scenario() -> None:
        async with AsyncClient(server.url, ADMIN_TOKEN) as nb:
            name = uniq("async")
            host = await nb.create_host(two_socket(name))
            names = [h.name async for h in nb.iter_hosts(limit=1)]
            assert name in names
            assert (await nb.get_host(host.id)).version == 1
            with pytest.raises(NotFound):
                await nb.get_domain(str(uuid.uuid4()))
            assert (await nb.set_host_state(host.id, "maintenance", if_match=True)).version == 2

    asyncio.run(scenario())


def test_async_wait_for_migration_follows_it_to_completed(server: Server, nb: Client) -> None:
    sim, domain_id, dst = _migration_setup(nb)

    async def follow() -> str:
        async with AsyncClient(server.url, ADMIN_TOKEN) as anb:
            mig = await anb.start_migration(domain_id, dst, "replug")
            final = await anb.wait_for_migration(mig.id, advance=True, timeout_s=60)
            return final.state

    with sim:
        assert asyncio.run(follow()) == "completed"
    assert nb.get_domain(domain_id).host_id == dst
