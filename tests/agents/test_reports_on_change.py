"""The host agent renews its lease every cycle and sends a batch report only when something it
observes changed beyond the tolerance, or the lease's answer asks for one; it logs which it sent
and why. Against a real uvicorn, with a scripted backend (the hypervisor's view set by hand)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.local import LocalService
from numa_balloon_agent.agent import Agent, Settings
from numa_balloon_agent.steps import Outcome, Step
from numa_balloon_client import Client

ADMIN = "reports-on-change-admin-token-0123456789"


class Scripted:
    """A two-pnode machine whose free memory and guests' pools the test sets."""

    name = "scripted"

    def __init__(self) -> None:
        self.free: list[int] = [65536, 65536]
        self.pools: dict[str, list[int]] = {}

    def discover(self, *, name: str, reserved_mib: int) -> dict[str, Any]:
        return {
            "name": name,
            "pnodes": [{"memory_mib": 65536, "reserved_mib": 0, "cpus": 8}] * 2,
            "distances": [[10, 21], [21, 10]],
        }

    def external_id(self) -> str | None:
        return None

    def free_mib(self) -> list[int]:
        return list(self.free)

    def domains(self) -> list[dict[str, Any]]:
        return [
            {"domain_id": d, "vnodes": [{"index": i, "actual_mib": a} for i, a in enumerate(vn)]}
            for d, vn in self.pools.items()
        ]

    def apply(self, step: Step, *, dry_run: bool) -> Outcome:
        return Outcome(ack=True, ok=True, detail="done")

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    with LocalService(tmp_path_factory.mktemp("svc"), token=ADMIN) as svc:
        yield svc


def _sent(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """(what was sent, why) of each cycle logged since the last call."""
    out = [
        (str(r.__dict__["sent"]), str(r.__dict__["why"]))
        for r in caplog.records
        if r.name == "numa_balloon_agent" and "sent" in r.__dict__
    ]
    caplog.clear()
    return out


def test_the_agent_reports_only_on_change(
    service: LocalService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="numa_balloon_agent")
    backend = Scripted()
    settings = Settings(url=service.url, admin_token=ADMIN, name="kvm-lease", state_dir=tmp_path)
    agent = Agent(backend, settings, sleep=lambda _: None)  # type: ignore[arg-type]
    agent.ensure_registered()
    host_id = str(agent.host_id)
    with Client(service.url, ADMIN) as admin:
        dom = admin.create_domain(
            {
                "name": "vm-lease",
                "host_id": host_id,
                "memory": {"dynamic_min_mib": 2048, "dynamic_max_mib": 4096, "target_mib": 4096},
                "vnodes": [
                    {"size_mib": 2048, "vcpus": [0, 1], "distances": [10, 21]},
                    {"size_mib": 2048, "vcpus": [2, 3], "distances": [21, 10]},
                ],
            }
        )
        free = [p.free_mib for p in admin.get_host(host_id).pnodes]
    backend.free = list(free)
    backend.pools = {dom.id: [2048, 2048]}

    agent.cycle()
    assert _sent(caplog) == [("lease+report", "first report since the agent started")]
    agent.cycle()
    assert _sent(caplog) == [("lease", "nothing changed beyond the tolerance")]

    backend.free[0] -= 100  # within a block: not worth a report
    agent.cycle()
    assert _sent(caplog)[0][0] == "lease"
    backend.free[0] -= 400
    agent.cycle()
    [(sent, why)] = _sent(caplog)
    assert sent == "lease+report" and why.startswith("free memory on pnode 0 moved by -500")

    backend.pools[dom.id] = [2048, 1920]  # a pool moved
    agent.cycle()
    [(sent, why)] = _sent(caplog)
    assert sent == "lease+report" and why.startswith("pools moved in 1 guest")
    agent.cycle()
    assert _sent(caplog)[0][0] == "lease"

    backend.free[1] -= 8192  # far off the accounting: the service flags drift ...
    agent.cycle()
    assert _sent(caplog)[0][0] == "lease+report"
    agent.cycle()  # ... and wants full reports while the host is flagged
    assert _sent(caplog) == [("lease+report", "the service asked for a full report")]

    with Client(service.url, ADMIN) as admin:
        host = admin.get_host(host_id)
    assert host.agent.connected is True
    assert host.agent.last_report_at is not None
    agent.close()

    # A restarted agent reports at once (it holds nothing of what it sent before).
    again = Agent(backend, settings, sleep=lambda _: None)  # type: ignore[arg-type]
    again.cycle()
    assert _sent(caplog) == [("lease+report", "first report since the agent started")]
    again.close()
