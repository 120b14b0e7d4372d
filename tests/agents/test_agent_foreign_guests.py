"""A guest the service places on another host is refused in the batch report (409, naming it):
the host agent says so and reports the rest, instead of stopping (issue #22, item 7)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.local import LocalService
from numa_balloon_agent.agent import Agent, Settings
from numa_balloon_agent.backends.base import DomainReport
from numa_balloon_agent.backends.sysfs import SysfsBackend
from numa_balloon_client import Client
from tests.agents.trees import host_tree

ADMIN = "foreign-guests-admin-token-0123456789"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    with LocalService(tmp_path_factory.mktemp("svc"), token=ADMIN) as svc:
        yield svc


class SeesGuests(SysfsBackend):
    """The sysfs backend, seeing the guests it is told about (as libvirt would list them)."""

    def __init__(self, root: Path, guests: list[DomainReport]) -> None:
        super().__init__(root)
        self.guests = guests

    def domains(self) -> list[DomainReport]:
        return list(self.guests)


def test_the_agent_reports_without_the_refused_guest_and_goes_on(
    service: LocalService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Client(service.url, ADMIN) as admin:
        other = admin.create_host(
            {"name": "elsewhere", "pnodes": [{"memory_mib": 8192, "cpus": 4}], "distances": [[10]]}
        )
        guest = admin.create_domain(
            {
                "name": "not-here",
                "host_id": other.id,
                "memory": {"dynamic_min_mib": 1024, "dynamic_max_mib": 2048, "target_mib": 2048},
                "vnodes": [{"size_mib": 2048, "vcpus": [0], "distances": [10]}],
            }
        )
    seen = [{"domain_id": guest.id, "vnodes": [{"index": 0, "actual_mib": 2048}]}]
    backend = SeesGuests(host_tree(tmp_path / "root", [8192, 8192]), seen)
    settings = Settings(url=service.url, admin_token=ADMIN, name="here", state_dir=tmp_path / "s")
    agent = Agent(backend, settings, sleep=lambda _: None)
    with caplog.at_level(logging.WARNING, logger="numa_balloon_agent"):
        assert agent.run(cycles=2) == 0
    refused = [r for r in caplog.records if "another host" in r.getMessage()]
    # Said once: the second cycle finds nothing changed and sends only its lease (issue #25).
    assert len(refused) == 1 and refused[0].domain_ids == [guest.id]  # type: ignore[attr-defined]
    with Client(service.url, ADMIN) as admin:
        acc = admin.host_accounting(str(agent.host_id))
        assert [p.observed_free_mib for p in acc.pnodes] == backend.free_mib()
        assert admin.get_domain(guest.id).vnodes[0].actual_mib is None
    agent.close()
