"""Issue 27 item 6: a host registered by its agent with `reserved_mib` 0 was drift-flagged at
once (-3,186 MiB: the host OS's own memory). Without --reserved-mib the agent now proposes each
pnode's reserve from what the host already uses, less its running guests."""

from __future__ import annotations

from typing import Any

from numa_balloon_agent.agent import host_body, proposed_reserve_mib


class Machine:
    """A backend's discovery of a two-node host with 3,186 MiB in use, 1,024 of it a guest."""

    name = "fake"

    def discover(self, *, name: str, reserved_mib: int) -> dict[str, Any]:
        pnodes = [{"memory_mib": 8192, "reserved_mib": reserved_mib, "cpus": 4}] * 2
        return {
            "name": name,
            "pnodes": [dict(p) for p in pnodes],
            "distances": [[10, 20], [20, 10]],
        }

    def free_mib(self) -> list[int]:
        return [8192 - 2162, 8192 - 1024]

    def domains(self) -> list[dict[str, Any]]:
        return [{"domain_id": "g", "vnodes": [{"index": 0, "actual_mib": 1024}]}]

    def external_id(self) -> str | None:
        return None


def test_the_reserve_is_what_the_host_uses_less_its_guests_rounded_up() -> None:
    assert proposed_reserve_mib([8192, 8192], [8192 - 2162, 8192 - 1024]) == [2176, 1024]
    # 1,024 MiB of guests spread by use: 2162 - 695 = 1467 -> 1472; 1024 - 329 = 695 -> 704.
    assert proposed_reserve_mib([8192, 8192], [6030, 7168], guests_mib=1024) == [1472, 704]
    assert proposed_reserve_mib([1024], [1024]) == [0]  # nothing used: nothing reserved
    assert proposed_reserve_mib([1024], [0], guests_mib=5000) == [0]  # never negative


def test_discover_without_a_reserve_proposes_one_and_a_given_one_stands() -> None:
    proposed = host_body(Machine(), "kvm-1", None, None)  # type: ignore[arg-type]
    assert [p["reserved_mib"] for p in proposed["pnodes"]] == [1472, 704]
    given = host_body(Machine(), "kvm-1", 256, None)  # type: ignore[arg-type]
    assert [p["reserved_mib"] for p in given["pnodes"]] == [256, 256]
