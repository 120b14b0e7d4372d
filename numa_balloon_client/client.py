"""The synchronous client: one method per operation, returning the API's pydantic models.

with Client("http://127.0.0.1:8000", token) as nb:
    host = nb.create_host(body)                      # Idempotency-Key made and reused
    for d in nb.iter_domains(host_id=host.id): ...   # every page
    nb.get_domain(d.id); nb.set_target(d.id, {"target_mib": 4096}, if_match=True)
    nb.wait_for_migration(mig.id, advance=True)      # long-poll, falls back to polling
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

import httpx
from httpx_sse import connect_sse

from numa_balloon_client import models as m
from numa_balloon_client import ops
from numa_balloon_client._core import (
    Call,
    ETags,
    Page,
    RetryPolicy,
    finish,
    head_search,
    request_parts,
    should_retry,
)
from numa_balloon_client._wait import (
    EARLY_FRACTION,
    TERMINAL,
    StepFailed,
    WaitTimeout,
    failed_gate_step,
    ready_to_advance,
    wait_disabled_by,
)
from numa_balloon_client.errors import Conflict, ConnectionFailed, NumaBalloonError
from numa_balloon_client.ops import Body, ExportFormat, IfMatch, Labels, RunsOn, Strategy

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 10.0


class Client:
    """A numa-balloon client over one `httpx.Client` (connection pool, keep-alive)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._owns_http = http is None
        self.http = http or httpx.Client(base_url=base_url, timeout=timeout_s, transport=transport)
        self.token = token
        self.retry = retry or RetryPolicy()
        self.etags = ETags()
        self._sleep = sleep
        self._use_wait = True

    def with_token(self, token: str) -> Client:
        """The same connection pool under another identity (an agent's, a guest's)."""
        return Client(
            str(self.http.base_url), token, retry=self.retry, http=self.http, sleep=self._sleep
        )

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- sending ------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def run(self, call: Call[T]) -> T:
        """Send `call`, retrying 503s and connection errors with backoff; raise problems."""
        parts = request_parts(call, self.etags)
        parts["headers"].update(self._headers())
        for attempt in range(self.retry.attempts):
            last = attempt == self.retry.attempts - 1
            try:
                response = self.http.request(call.method, call.path, **parts)
            except httpx.TransportError as exc:
                if last or not should_retry(call, exc):
                    raise ConnectionFailed(call.method, call.path, exc) from exc
                self._sleep(self.retry.delay_s(attempt))
                continue
            if response.status_code == 503 and not last:
                self._sleep(self.retry.delay_s(attempt, response.headers.get("Retry-After")))
                continue
            return finish(call, response, self.etags)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _pages(self, make: Callable[[str | None], Call[Page[T]]]) -> Iterator[T]:
        cursor: str | None = None
        while True:
            page = self.run(make(cursor))
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # --- health -------------------------------------------------------------------------------

    def healthz(self) -> dict[str, str]:
        return self.run(ops.healthz())

    def readyz(self) -> dict[str, Any]:
        return self.run(ops.readyz())

    # --- hosts --------------------------------------------------------------------------------

    def create_host(self, body: Body, *, idempotency_key: str | None = None) -> m.HostCreated:
        return self.run(ops.create_host(body, idempotency_key))

    def list_hosts(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        name: str | None = None,
        external_id: str | None = None,
        labels: Labels = None,
    ) -> Page[m.HostOut]:
        return self.run(ops.list_hosts(limit, cursor, name, external_id, labels))

    def iter_hosts(
        self,
        *,
        name: str | None = None,
        external_id: str | None = None,
        labels: Labels = None,
        limit: int | None = None,
    ) -> Iterator[m.HostOut]:
        return self._pages(lambda c: ops.list_hosts(limit, c, name, external_id, labels))

    def get_host(self, host_id: str) -> m.HostOut:
        return self.run(ops.get_host(host_id))

    def set_host_state(self, host_id: str, state: str, *, if_match: IfMatch = None) -> m.HostOut:
        return self.run(ops.patch_host(host_id, {"state": state}, if_match))

    def patch_host(self, host_id: str, body: Body, *, if_match: IfMatch = None) -> m.HostOut:
        return self.run(ops.patch_host(host_id, body, if_match))

    def delete_host(self, host_id: str, *, if_match: IfMatch = None) -> None:
        self.run(ops.delete_host(host_id, if_match))

    def host_accounting(self, host_id: str) -> m.Accounting:
        return self.run(ops.host_accounting(host_id))

    def squeeze(self, host_id: str, body: Body) -> m.SqueezeResult:
        return self.run(ops.squeeze(host_id, body))

    def rebalance(self, host_id: str, body: Body) -> m.RebalanceOut:
        return self.run(ops.rebalance(host_id, body))

    def evacuate(self, host_id: str, body: Body | None = None) -> m.EvacuationOut:
        return self.run(ops.evacuate(host_id, body))

    def rotate_agent_token(self, host_id: str) -> m.AgentToken:
        return self.run(ops.rotate_agent_token(host_id))

    # --- domains ------------------------------------------------------------------------------

    def create_domain(self, body: Body, *, idempotency_key: str | None = None) -> m.DomainCreated:
        return self.run(ops.create_domain(body, idempotency_key))

    def list_domains(
        self,
        *,
        host_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        name: str | None = None,
        external_id: str | None = None,
        labels: Labels = None,
    ) -> Page[m.DomainOut]:
        return self.run(ops.list_domains(host_id, limit, cursor, name, external_id, labels))

    def iter_domains(
        self,
        *,
        host_id: str | None = None,
        name: str | None = None,
        external_id: str | None = None,
        labels: Labels = None,
        limit: int | None = None,
    ) -> Iterator[m.DomainOut]:
        return self._pages(lambda c: ops.list_domains(host_id, limit, c, name, external_id, labels))

    def get_domain(self, domain_id: str) -> m.DomainOut:
        return self.run(ops.get_domain(domain_id))

    def set_target(self, domain_id: str, body: Body, *, if_match: IfMatch = None) -> m.DomainOut:
        return self.run(ops.set_target(domain_id, body, if_match))

    def delete_domain(self, domain_id: str, *, if_match: IfMatch = None) -> None:
        self.run(ops.delete_domain(domain_id, if_match))

    def domain_placements(self, domain_id: str) -> m.Placements:
        return self.run(ops.domain_placements(domain_id))

    def export_domain(
        self, domain_id: str, fmt: ExportFormat, definition: ops.Definition | None = None
    ) -> str:
        """`definition` only with `libvirt-domain`: what a definition that boots needs."""
        return self.run(ops.export_domain(domain_id, fmt, definition))

    def rotate_guest_token(self, domain_id: str) -> m.GuestToken:
        return self.run(ops.rotate_guest_token(domain_id))

    def place(self, body: Body, *, limit: int | None = None) -> m.PlacementPreview:
        return self.run(ops.place(body, limit))

    # --- migrations ---------------------------------------------------------------------------

    def plan_migration(
        self,
        domain_id: str,
        destination_host_id: str,
        strategy: Strategy = "rebalance",
        *,
        policy: str | None = None,
    ) -> m.PlanOut:
        body = ops.migration_body(domain_id, destination_host_id, strategy, policy, None)
        return self.run(ops.plan_migration(body))

    def start_migration(
        self,
        domain_id: str,
        destination_host_id: str,
        strategy: Strategy = "rebalance",
        *,
        policy: str | None = None,
        auto_advance: bool | None = None,
        idempotency_key: str | None = None,
    ) -> m.MigrationOut:
        body = ops.migration_body(domain_id, destination_host_id, strategy, policy, auto_advance)
        return self.run(ops.start_migration(body, idempotency_key))

    def get_migration(self, migration_id: str) -> m.MigrationOut:
        return self.run(ops.get_migration(migration_id))

    def advance_migration(self, migration_id: str) -> m.MigrationOut:
        return self.run(ops.advance_migration(migration_id))

    def abort_migration(
        self, migration_id: str, *, runs_on: RunsOn | None = None
    ) -> m.MigrationOut:
        """Give up: roll back to the source; in `migrating`, say where the domain runs now."""
        return self.run(ops.abort_migration(migration_id, runs_on))

    def list_migrations(
        self,
        *,
        domain_id: str | None = None,
        state: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[m.MigrationOut]:
        return self.run(ops.list_migrations(domain_id, state, limit, cursor))

    def iter_migrations(
        self, *, domain_id: str | None = None, state: str | None = None, limit: int | None = None
    ) -> Iterator[m.MigrationOut]:
        return self._pages(lambda c: ops.list_migrations(domain_id, state, limit, c))

    # --- cluster ------------------------------------------------------------------------------

    def get_cluster(self) -> m.ClusterOut:
        return self.run(ops.get_cluster())

    def put_cluster(self, body: Body) -> m.ClusterOut:
        return self.run(ops.put_cluster(body))

    def patch_cluster(self, body: Body) -> m.ClusterOut:
        return self.run(ops.patch_cluster(body))

    def failover_plan(self, body: Body) -> m.FailoverPlanOut:
        """Can every protected domain restart after any r host failures? Nothing changes."""
        return self.run(ops.failover_plan(body))

    def fail_host(self, host_id: str, reason: str | None = None) -> m.RecoveryOut:
        """Declare the host failed: its protected domains restart on the plan's hosts."""
        return self.run(ops.fail_host(host_id, reason))

    def get_template(self) -> m.WorstCaseTemplateOut:
        return self.run(ops.get_template())

    def derive_template(self) -> m.WorstCaseTemplateOut:
        return self.run(ops.derive_template())

    # --- events -------------------------------------------------------------------------------

    def list_events(
        self,
        *,
        since: int | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        subject_id: str | None = None,
        kind: str | None = None,
        actor: str | None = None,
        wait_s: float | None = None,
    ) -> Page[m.EventOut]:
        timeout = None if not wait_s else wait_s + DEFAULT_TIMEOUT_S
        return self.run(
            ops.list_events(since, cursor, limit, subject_id, kind, actor, wait_s, timeout)
        )

    def iter_events(
        self,
        *,
        since: int | None = None,
        subject_id: str | None = None,
        kind: str | None = None,
        actor: str | None = None,
        limit: int | None = None,
    ) -> Iterator[m.EventOut]:
        """Every event after `since` that exists now (no waiting)."""
        return self._pages(
            lambda c: ops.list_events(since, c, limit, subject_id, kind, actor, None, None)
        )

    def poll_events(
        self,
        since: int,
        *,
        wait_s: float = 25.0,
        poll_s: float = 1.0,
        subject_id: str | None = None,
        kind: str | None = None,
        actor: str | None = None,
    ) -> list[m.EventOut]:
        """Events after `since`, waiting up to `wait_s` for the first (long-poll). A server that
        ignores `wait` answers at once with an empty page: then sleep `poll_s` instead."""
        started = time.monotonic()
        try:
            page = self.list_events(
                since=since,
                subject_id=subject_id,
                kind=kind,
                actor=actor,
                wait_s=wait_s if self._use_wait else None,
            )
        except NumaBalloonError as exc:
            if not (self._use_wait and wait_disabled_by(exc)):
                raise
            self._use_wait = False
            return self.poll_events(
                since, wait_s=wait_s, poll_s=poll_s, subject_id=subject_id, kind=kind, actor=actor
            )
        if not page.items and time.monotonic() - started < wait_s * EARLY_FRACTION:
            self._sleep(poll_s)
        return page.items

    def watch(
        self,
        *,
        since: int = 0,
        subject_id: str | None = None,
        kind: str | None = None,
        actor: str | None = None,
        wait_s: float = 25.0,
        poll_s: float = 1.0,
    ) -> Iterator[m.EventOut]:
        """Every event after `since`, then each new one as it happens, forever (long-poll)."""
        while True:
            for event in self.poll_events(
                since, wait_s=wait_s, poll_s=poll_s, subject_id=subject_id, kind=kind, actor=actor
            ):
                since = max(since, event.seq)
                yield event

    def stream_events(
        self,
        *,
        last_event_id: int | None = None,
        subject_id: str | None = None,
        kind: str | None = None,
        actor: str | None = None,
    ) -> Iterator[m.EventOut]:
        """The SSE stream (`GET /v1/events/stream`), resuming after `last_event_id`."""
        headers = self._headers()
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        params = ops.events_stream_params(subject_id, kind, actor)
        with connect_sse(
            self.http,
            "GET",
            "/v1/events/stream",
            headers=headers,
            params=list(params),
            timeout=None,
        ) as source:
            if source.response.status_code >= 400:
                source.response.read()
                finish(Call("GET", "/v1/events/stream", lambda r: None), source.response, ETags())
            for sse in source.iter_sse():
                if sse.data:
                    yield m.EventOut.model_validate_json(sse.data)

    def latest_event_seq(self) -> int:
        """The newest event's seq now (0 when the log is empty): where "from now on" starts."""
        search = head_search()
        since = next(search)
        while True:
            page = self.list_events(since=since, limit=1)
            try:
                since = search.send(page.items[0].seq if page.items else None)
            except StopIteration as done:
                return int(done.value)

    def _head_seq(self, subject_id: str) -> int:
        """The last event about `subject_id`: new events about anything come after it."""
        return max((e.seq for e in self.iter_events(subject_id=subject_id)), default=0)

    def wait_for_migration(
        self,
        migration_id: str,
        states: Iterable[str] = TERMINAL,
        *,
        timeout_s: float | None = None,
        advance: bool = False,
        wait_s: float = 10.0,
        poll_s: float = 0.5,
        on_update: Callable[[m.MigrationOut], None] | None = None,
    ) -> m.MigrationOut:
        """Follow a migration until it is in one of `states`, re-reading it whenever an event
        happens. With `advance`, move it on as soon as its current phase is acknowledged
        (raises StepFailed when a gating step failed). Raises WaitTimeout after `timeout_s`."""
        wanted = tuple(states)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        since = self._head_seq(migration_id)
        while True:
            mig = self.get_migration(migration_id)
            if on_update is not None:
                on_update(mig)
            if mig.state in wanted:
                return mig
            if advance and (step := failed_gate_step(mig)) is not None:
                raise StepFailed(mig, step)
            if advance and ready_to_advance(mig) and self._advance(migration_id):
                continue
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise WaitTimeout(mig, wanted, timeout_s)
            wait = wait_s if left is None else max(0.0, min(wait_s, left))
            events = self.poll_events(since, wait_s=wait, poll_s=poll_s)
            since = max([since, *(e.seq for e in events)])

    def _advance(self, migration_id: str) -> bool:
        """Advance; a 409 means someone (the server's auto-advance, another operator) did it
        first or a step is not done yet: re-read instead of failing."""
        try:
            self.advance_migration(migration_id)
        except Conflict:
            return False
        return True

    # --- API keys -----------------------------------------------------------------------------

    def create_api_key(
        self,
        name: str,
        role: str,
        *,
        expires_at: datetime | str | None = None,
        idempotency_key: str | None = None,
    ) -> m.ApiKeyCreated:
        return self.run(ops.create_api_key(name, role, expires_at, idempotency_key))

    def list_api_keys(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[m.ApiKeyOut]:
        return self.run(ops.list_api_keys(limit, cursor))

    def iter_api_keys(self, *, limit: int | None = None) -> Iterator[m.ApiKeyOut]:
        return self._pages(lambda c: ops.list_api_keys(limit, c))

    def get_api_key(self, key_id: str) -> m.ApiKeyOut:
        return self.run(ops.get_api_key(key_id))

    def revoke_api_key(self, key_id: str) -> None:
        self.run(ops.revoke_api_key(key_id))

    def rotate_api_key(self, key_id: str) -> m.ApiKeyCreated:
        return self.run(ops.rotate_api_key(key_id))

    # --- host agent (with the host's agent token) ---------------------------------------------

    def agent_observed(self, host_id: str, pnodes: list[Mapping[str, int]]) -> m.ObservedOut:
        return self.run(ops.agent_observed(host_id, {"pnodes": list(pnodes)}))

    def agent_steps(self, host_id: str) -> m.StepList:
        return self.run(ops.agent_steps(host_id))

    def agent_ack(
        self, host_id: str, step_id: str, *, ok: bool = True, detail: str | None = None
    ) -> m.StepOut:
        return self.run(ops.agent_ack(host_id, step_id, ok, detail))

    def agent_report(self, host_id: str, body: Body) -> m.AgentReportOut:
        return self.run(ops.agent_report(host_id, body))

    def agent_lease(self, host_id: str, seq: int | None = None) -> m.LeaseOut:
        return self.run(ops.agent_lease(host_id, seq))

    # --- guest (with the domain's guest token) ------------------------------------------------

    def guest_topology(self) -> m.GuestTopology:
        return self.run(ops.guest_topology())

    def guest_balloon(self) -> m.GuestBalloon:
        return self.run(ops.guest_balloon())

    def guest_report(
        self, actual_mib: Mapping[int, int], visible_mib: Mapping[int, int] | None = None
    ) -> m.GuestBalloon:
        """Each pool's size (what it holds), and optionally what the guest kernel shows of
        each node (its MemTotal)."""
        seen = visible_mib or {}
        vnodes = [
            {"index": v, "actual_mib": a, **({"visible_mib": seen[v]} if v in seen else {})}
            for v, a in actual_mib.items()
        ]
        return self.run(ops.guest_report({"vnodes": vnodes}))
