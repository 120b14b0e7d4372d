"""Request bodies for realistic hosts and domains."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.api.client import ApiClient


def slit(n: int, per_socket: int = 1, near: int = 12, far: int = 21) -> list[list[int]]:
    """n nodes grouped into sockets of `per_socket` nodes: 10 local, `near` same socket, `far`."""
    return [
        [10 if i == j else near if i // per_socket == j // per_socket else far for j in range(n)]
        for i in range(n)
    ]


def host_body(
    name: str,
    n: int = 2,
    memory_mib: int = 65536,
    reserved_mib: int = 0,
    cpus: int = 16,
    per_socket: int = 1,
) -> dict[str, Any]:
    return {
        "name": name,
        "pnodes": [
            {"memory_mib": memory_mib, "reserved_mib": reserved_mib, "cpus": cpus} for _ in range(n)
        ],
        "distances": slit(n, per_socket),
    }


def domain_body(
    name: str,
    sizes: list[int],
    *,
    vcpus_per_vnode: int = 2,
    target_mib: int | None = None,
    dynamic_min_mib: int | None = None,
    host_id: str | None = None,
    policy: str = "proportional",
    far: int = 21,
) -> dict[str, Any]:
    k = len(sizes)
    total = sum(sizes)
    body: dict[str, Any] = {
        "name": name,
        "memory": {
            "dynamic_min_mib": total // 2 if dynamic_min_mib is None else dynamic_min_mib,
            "dynamic_max_mib": total,
            "target_mib": total if target_mib is None else target_mib,
        },
        "vnodes": [
            {
                "size_mib": s,
                "vcpus": list(range(v * vcpus_per_vnode, (v + 1) * vcpus_per_vnode)),
                "distances": [10 if u == v else far for u in range(k)],
            }
            for v, s in enumerate(sizes)
        ],
        "policy": policy,
    }
    if host_id is not None:
        body["host_id"] = host_id
    return body


def created(client: ApiClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST `body` and return the created resource (asserting 201)."""
    r = client.post(path, json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out
