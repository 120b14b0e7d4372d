"""The agent's cycle: register once (admin token, idempotently), then with the host's own agent
token: observe, send one batch report, carry out the pending steps. `run` repeats it every
interval and survives the control plane being down (bounded, jittered backoff)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from numa_balloon_agent.backends.base import Backend
from numa_balloon_agent.steps import Step
from numa_balloon_client import Client, Conflict, NumaBalloonError, RetryPolicy
from numa_balloon_client.errors import ApiError, Unauthorized

log = logging.getLogger("numa_balloon_agent")
STATE_FILE = "agent.json"
SHORT_RETRY = RetryPolicy(attempts=2, cap_s=1.0)


def machine_id(path: Path = Path("/etc/machine-id")) -> str:
    try:
        value = path.read_text().strip()
    except OSError:
        value = ""
    return value or os.uname().nodename


def idempotency_key(name: str, machine: str) -> str:
    """Stable across restarts of this machine, so registering again finds the same host."""
    return "nb-agent-" + hashlib.sha256(f"{machine}\0{name}".encode()).hexdigest()[:40]


@dataclass
class Settings:
    url: str
    admin_token: str | None
    name: str
    state_dir: Path
    reserved_mib: int = 0
    interval_s: float = 10.0
    dry_run: bool = False
    max_backoff_s: float = 300.0
    machine_id_file: Path = Path("/etc/machine-id")


@dataclass
class Agent:
    backend: Backend
    settings: Settings
    host_id: str | None = None
    client: Client | None = None
    applied: set[str] = field(default_factory=set)  # pool steps already set on the hypervisor
    sleep: Callable[[float], None] = time.sleep

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

    def _save_state(self, state: dict[str, Any]) -> None:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)
        os.replace(tmp, self.state_path)

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
            raise SystemExit(f"no agent state in {self.state_path}: --token (admin) is needed once")
        body = self.backend.discover(
            name=self.settings.name, reserved_mib=self.settings.reserved_mib
        )
        key = idempotency_key(self.settings.name, machine_id(self.settings.machine_id_file))
        with Client(self.settings.url, self.settings.admin_token) as admin:
            created = admin.create_host(body, idempotency_key=key)
            token = created.agent_token
            # A replay (this machine registered before) shows the token of the first response,
            # which may have been rotated since: when that one was just refused, get a new one.
            if not token or refused:
                token = admin.rotate_agent_token(created.id).agent_token
        state = {"url": self.settings.url, "host_id": created.id, "agent_token": token}
        self._save_state(state)
        log.info("registered", extra={"host_id": created.id, "host_name": self.settings.name})
        return state

    # --- one cycle ---------------------------------------------------------------------------

    def cycle(self) -> dict[str, int]:
        """One cycle; a refused agent token (rotated by an operator, or by this machine
        registering again from another state directory) is replaced once with the admin token."""
        try:
            return self._cycle()
        except Unauthorized:
            if not self.settings.admin_token:
                raise
            log.warning("agent token refused; registering again", extra={"host_id": self.host_id})
            if self.client is not None:
                self.client.close()
            self.client = None
            self.state_path.unlink(missing_ok=True)
            self.ensure_registered(refused=True)
            return self._cycle()

    def _report(self, client: Client, body: dict[str, Any]) -> dict[str, Any]:
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

    def _cycle(self) -> dict[str, int]:
        client = self.ensure_registered()
        assert self.host_id is not None
        free = self.backend.free_mib()
        domains = self.backend.domains()
        body = {
            "pnodes": [{"index": i, "free_mib": f} for i, f in enumerate(free)],
            "domains": domains,
        }
        report = self._report(client, body)
        log.info(
            "reported",
            extra={
                "free_mib": free,
                "domains": len(domains),
                "unknown_domains": len(report.get("unknown_domains", [])),
                "drift_flagged": report.get("drift_flagged"),
            },
        )
        acked = applied = 0
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
                continue
            try:
                client.agent_ack(self.host_id, step.id, ok=outcome.ok, detail=outcome.detail)
                acked += 1
            except Conflict:
                pass  # already completed (a report reached it, or a retried ack)
        self._remember_applied()
        return {"acked": acked, "applied": applied}

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
        failures = done = 0
        while True:
            try:
                self.cycle()
                failures = 0
            except ApiError as exc:
                if once or exc.status < 500:
                    raise
                failures += 1
            except NumaBalloonError as exc:  # connection refused, timeouts: the service is down
                if once:
                    raise
                failures += 1
                log.warning("control plane unreachable", extra={"error": str(exc)})
            done += 1
            if once or (cycles is not None and done >= cycles):
                return 0
            self.sleep(self.delay(failures))

    def delay(self, failures: int) -> float:
        """The interval; after failures, doubling up to max_backoff_s, with jitter."""
        base = self.settings.interval_s
        if failures == 0:
            return base
        backoff = min(self.settings.max_backoff_s, base * 2 ** min(failures, 16))
        return float(backoff * random.uniform(0.5, 1.0))
