"""The agent's cycle: register once (admin token, idempotently, adopting this machine's host if
it is there already: see `registration`), then with the host's own agent token: renew the
host's lease, observe, send a batch report only when something changed (or the lease's answer
asks for one), carry out the pending steps. `run` repeats it every interval and survives the
control plane being down (the shared loop's bounded, jittered backoff).

Reports only on change (issue 25, after Kubernetes' node Lease): at 10,000 hosts a report
every 10 s from every host cost the service most of its CPU, and nearly all of them repeated
what it held. The lease is the heartbeat; a report goes when a pool moved, a guest came or
went, a pnode's free memory moved by more than `report_tolerance_mib`, a step was carried out
that a report completes, or the service asks (its restart, ours, a pending step, a drift flag,
every NUMA_BALLOON_AGENT_FULL_REPORT_S). Each cycle logs which it sent and why."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from numa_balloon_agent.backends.base import Backend
from numa_balloon_agent.registration import register
from numa_balloon_agent.steps import Step
from numa_balloon_client import Client, Conflict, RetryPolicy, Unauthorized
from numa_balloon_client import models as m
from numa_balloon_client.programs.exits import Refused, UsageError, one_line
from numa_balloon_client.programs.loop import Backoff, run_cycles

log = logging.getLogger("numa_balloon_agent")
STATE_FILE = "agent.json"
SHORT_RETRY = RetryPolicy(attempts=2, cap_s=1.0)


#: A proposed reserve is rounded up to this (MiB), so a host's noise does not show in it.
RESERVE_ROUND_MIB = 64


def proposed_reserve_mib(
    memory_mib: list[int], free_mib: list[int], guests_mib: int = 0
) -> list[int]:
    """Per pnode, what the host already uses (memory - free) less the guests running now (their
    total, spread over the pnodes in proportion to what each uses: the hypervisor does not say
    where), rounded up to RESERVE_ROUND_MIB, within the pnode's memory. A host registered with
    `reserved_mib` 0 was drift-flagged at once by its own OS's memory (issue 27 item 6)."""
    used = [max(m - f, 0) for m, f in zip(memory_mib, free_mib, strict=True)]
    total = sum(used)
    out = []
    for memory, u in zip(memory_mib, used, strict=True):
        own = u - (guests_mib * u // total if total else 0)
        rounded = -(-max(own, 0) // RESERVE_ROUND_MIB) * RESERVE_ROUND_MIB
        out.append(min(rounded, memory))
    return out


def host_body(
    backend: Backend, name: str, reserved_mib: int | None, external_id: str | None
) -> dict[str, Any]:
    """The `POST /v1/hosts` body for the backend's machine, with its external_id: the one
    given, else the backend's own idea of which machine it observes. `reserved_mib` None:
    each pnode's reserve proposed from what the host uses now (`proposed_reserve_mib`)."""
    body = backend.discover(name=name, reserved_mib=reserved_mib or 0)
    if reserved_mib is None:
        guests = sum(v["actual_mib"] for d in backend.domains() for v in d["vnodes"])
        memory = [p["memory_mib"] for p in body["pnodes"]]
        proposed = proposed_reserve_mib(memory, backend.free_mib(), guests)
        for pnode, mib in zip(body["pnodes"], proposed, strict=True):
            pnode["reserved_mib"] = mib
    identity = external_id or backend.external_id()
    if identity:
        body["external_id"] = identity
    return body


@dataclass
class Settings:
    url: str
    admin_token: str | None
    name: str
    state_dir: Path
    reserved_mib: int | None = None  # None: proposed from what the host uses (`host_body`)
    interval_s: float = 10.0
    dry_run: bool = False
    max_backoff_s: float = 300.0
    external_id: str | None = None  # None: the backend's (see `host_body`)
    # A pnode's free memory moving by more than this since the last report is a change worth
    # reporting (the service's drift threshold is 1 GiB; a block is 128 MiB).
    report_tolerance_mib: int = 128


@dataclass
class Agent:
    backend: Backend
    settings: Settings
    host_id: str | None = None
    client: Client | None = None
    applied: set[str] = field(default_factory=set)  # pool steps already set on the hypervisor
    sleep: Callable[[float], None] = time.sleep
    seq: int = 0  # lease renewals since this process started (0 tells the service we restarted)
    # What the last accepted report said (free MiB per pnode, pools per domain); None: no report
    # since this process started, so the next cycle reports.
    last_free: list[int] | None = None
    last_pools: dict[str, dict[int, int]] | None = None
    owed: str | None = None  # a report owed for a reason found after the last one

    # --- registration ------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.settings.state_dir / STATE_FILE

    def _load_state(self) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None
        return state if state.get("url") == self.settings.url else None

    def _state_dir_unusable(self, why: str) -> UsageError:
        return UsageError(
            f"--state-dir {self.settings.state_dir}: cannot keep the agent's state there: {why}"
        )

    def _check_state_dir(self) -> None:
        """Before a token is issued: it must have somewhere to go."""
        try:
            self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._state_dir_unusable(exc.strerror or str(exc)) from exc
        if not os.access(self.settings.state_dir, os.W_OK | os.X_OK):
            raise self._state_dir_unusable("not writable")

    def _save_state(self, state: dict[str, Any]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(state, f)
            os.replace(tmp, self.state_path)
        except OSError as exc:
            raise self._state_dir_unusable(exc.strerror or str(exc)) from exc

    def ensure_registered(self, *, refused: bool = False) -> Client:
        if self.client is not None:
            return self.client
        state = self._load_state()
        if state is None:
            state = self._register(refused=refused)
        self.host_id = str(state["host_id"])
        self.applied = set(state.get("applied", []))
        # Short retries inside a cycle; a longer outage is the loop's backoff, not the client's.
        self.client = Client(self.settings.url, str(state["agent_token"]), retry=SHORT_RETRY)
        return self.client

    def _register(self, *, refused: bool = False) -> dict[str, Any]:
        if not self.settings.admin_token:
            raise UsageError(
                f"no agent state in {self.state_path}: the admin token (--token or "
                "NUMA_BALLOON_TOKEN) is needed once, to register this host"
            )
        s = self.settings
        body = host_body(self.backend, s.name, s.reserved_mib, s.external_id)
        self._check_state_dir()
        with Client(s.url, s.admin_token) as admin:
            try:
                done = register(admin, body, refused=refused)
            except Unauthorized as exc:
                raise Refused(f"{one_line(exc)}: the admin token was refused") from exc
        state = {"url": s.url, "host_id": done.host_id, "agent_token": done.agent_token}
        self._save_state(state)
        log.info(
            "adopted this machine's host" if done.adopted else "registered",
            extra={
                "host_id": done.host_id,
                "host_name": done.host_name,
                "external_id": body.get("external_id"),
            },
        )
        return state

    # --- one cycle ---------------------------------------------------------------------------

    def cycle(self) -> dict[str, int]:
        """One cycle; a refused agent token (rotated by an operator, or by this machine
        registering again from another state directory) is replaced once with the admin token."""
        try:
            return self._cycle()
        except Unauthorized as exc:
            if not self.settings.admin_token:
                raise Refused(
                    f"{one_line(exc)}: the agent token in {self.state_path} was refused "
                    "(rotated?); start the agent once with the admin token to take a new one"
                ) from exc
            log.warning("agent token refused; registering again", extra={"host_id": self.host_id})
            if self.client is not None:
                self.client.close()
            self.client = None
            self.state_path.unlink(missing_ok=True)
            self.last_free = self.last_pools = None  # a new host, perhaps: report it whole
            self.ensure_registered(refused=True)
            return self._cycle()

    def _report(self, client: Client, body: dict[str, Any]) -> m.AgentReportOut:
        """Send the batch report. Guests the service places on another host are refused (409,
        naming them): say so and report the rest, so this host's free memory and its own
        guests are still recorded."""
        assert self.host_id is not None
        try:
            return client.agent_report(self.host_id, body)
        except Conflict as exc:
            foreign = set(exc.body.get("foreign_domain_ids") or ())
            if not foreign:
                raise
            log.warning(
                "guests the service places on another host; not reported",
                extra={"domain_ids": sorted(foreign)},
            )
            kept = [d for d in body["domains"] if d["domain_id"] not in foreign]
            return client.agent_report(self.host_id, {**body, "domains": kept})

    def _why_report(
        self, lease: m.LeaseOut, free: list[int], pools: dict[str, dict[int, int]]
    ) -> str | None:
        """Why this cycle sends a batch report, or None: only the lease."""
        if self.last_free is None or self.last_pools is None:
            return "first report since the agent started"
        if lease.report:
            return "the service asked for a full report"
        if self.owed is not None:
            return self.owed
        came = sorted(set(pools) - set(self.last_pools))
        went = sorted(set(self.last_pools) - set(pools))
        if came or went:
            return f"guests came ({len(came)}) or went ({len(went)})"
        moved = [d for d, vn in pools.items() if vn != self.last_pools[d]]
        if moved:
            return f"pools moved in {len(moved)} guest(s), e.g. {moved[0]}"
        if len(free) != len(self.last_free):
            return "the pnodes changed"
        tol = self.settings.report_tolerance_mib
        for i, (now, was) in enumerate(zip(free, self.last_free, strict=True)):
            if abs(now - was) > tol:
                return f"free memory on pnode {i} moved by {now - was:+d} MiB (> {tol})"
        return None

    def _cycle(self) -> dict[str, int]:
        client = self.ensure_registered()
        assert self.host_id is not None
        lease = client.agent_lease(self.host_id, self.seq)
        self.seq += 1
        free = self.backend.free_mib()
        domains = self.backend.domains()
        pools = {
            str(d["domain_id"]): {int(v["index"]): int(v["actual_mib"]) for v in d["vnodes"]}
            for d in domains
        }
        why = self._why_report(lease, free, pools)
        if why is None:
            log.info(
                "renewed the lease",
                extra={
                    "sent": "lease",
                    "why": "nothing changed beyond the tolerance",
                    "lease_expires_at": lease.expires_at.isoformat(),
                },
            )
        else:
            body = {
                "pnodes": [{"index": i, "free_mib": f} for i, f in enumerate(free)],
                "domains": domains,
            }
            report = self._report(client, body)
            self.last_free, self.last_pools, self.owed = free, pools, None
            log.info(
                "reported",
                extra={
                    "sent": "lease+report",
                    "why": why,
                    "free_mib": free,
                    "domains": len(domains),
                    "unknown_domains": len(report.unknown_domains),
                    "drift_flagged": report.drift_flagged,
                },
            )
        acked = applied = 0
        if not lease.steps_pending:
            self._remember_applied()
            return {"acked": acked, "applied": applied, "reported": int(why is not None)}
        for raw in client.agent_steps(self.host_id).items:
            step = Step.from_api(raw.model_dump(mode="json"))
            if step.id in self.applied:
                continue
            outcome = self.backend.apply(step, dry_run=self.settings.dry_run)
            log.info(
                "step",
                extra={
                    "step": step.describe(),
                    "detail": outcome.detail,
                    "ok": outcome.ok,
                    "dry_run": self.settings.dry_run,
                },
            )
            if self.settings.dry_run:
                continue
            if not outcome.ack:
                applied += outcome.ok
                self.applied.add(step.id)
                # The next report completes it: owe one even if nothing else changes.
                self.owed = f"step carried out, to complete: {step.describe()}"
                continue
            try:
                client.agent_ack(self.host_id, step.id, ok=outcome.ok, detail=outcome.detail)
                acked += 1
            except Conflict:
                pass  # already completed (a report reached it, or a retried ack)
        self._remember_applied()
        return {"acked": acked, "applied": applied, "reported": int(why is not None)}

    def _remember_applied(self) -> None:
        state = self._load_state()
        if state is not None and set(state.get("applied", [])) != self.applied:
            state["applied"] = sorted(self.applied)[-1000:]
            self._save_state(state)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.backend.close()

    # --- the loop ----------------------------------------------------------------------------

    def run(self, *, once: bool = False, cycles: int | None = None) -> int:
        backoff = Backoff(self.settings.interval_s, self.settings.max_backoff_s)
        return run_cycles(self.cycle, backoff, once=once, cycles=cycles, sleep=self.sleep)
