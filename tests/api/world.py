"""A small cluster with one of every kind of caller, for the authorization and leak tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body


@dataclass
class World:
    host_a: str
    host_b: str
    spare_host: str
    domain_x: str  # on host A
    domain_y: str  # on host B
    step_a: str  # a pending step on host A (domain X)
    domain_z: str  # on host A, being migrated to host B
    migration: str
    tokens: dict[str, str | None]
    key_ids: dict[str, str] = field(default_factory=dict)


def build_world(client: ApiClient) -> World:
    a = client.post("/v1/hosts", json=host_body("host-a", n=2, memory_mib=65536)).json()
    b = client.post("/v1/hosts", json=host_body("host-b", n=2, memory_mib=65536)).json()
    spare = client.post("/v1/hosts", json=host_body("host-spare", n=1)).json()
    x = client.post("/v1/domains", json=domain_body("dom-x", [2048, 2048], host_id=a["id"])).json()
    y = client.post("/v1/domains", json=domain_body("dom-y", [2048, 2048], host_id=b["id"])).json()
    r = client.put(f"/v1/domains/{x['id']}/target", json={"target_mib": 3072})
    assert r.status_code == 200, r.text
    assert client.post("/v1/cluster/worst-case-template").status_code == 200
    z = client.post("/v1/domains", json=domain_body("dom-z", [1024], host_id=a["id"])).json()
    m = client.post("/v1/migrations", json={"domain_id": z["id"], "destination_host_id": b["id"]})
    assert m.status_code == 201, m.text
    steps = client.get(f"/v1/agent/hosts/{a['id']}/steps", token=a["agent_token"]).json()["items"]
    return World(
        host_a=a["id"],
        host_b=b["id"],
        spare_host=spare["id"],
        domain_x=x["id"],
        domain_y=y["id"],
        step_a=steps[0]["id"],
        domain_z=z["id"],
        migration=m.json()["id"],
        tokens={
            "none": None,
            "bad": "nbh_not-a-real-token-at-all-0000000000000000000",
            "admin": client.token,
            "agent_this": a["agent_token"],
            "agent_other": b["agent_token"],
            "guest_this": x["guest_token"],
            "guest_other": y["guest_token"],
        },
    )
