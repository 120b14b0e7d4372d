"""Issue 27 item 7: which memory is which. `actual_mib` is what the hypervisor holds for a vnode
(boot memory + plugged blocks: the host agent's view, or the guest agent's count of the blocks
the node holds); the guest kernel's own MemTotal of the node is lower (its reservations). The
guest agent may report that too (`visible_mib`), and the domain shows it as `guest_visible_mib`;
before, the guest's view was nowhere."""

from __future__ import annotations

from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body


def test_the_guest_view_is_shown_next_to_what_the_hypervisor_holds(client: ApiClient) -> None:
    host = client.post("/v1/hosts", json=host_body("kvm-1", n=2)).json()
    body = domain_body("vm-1", [1024, 1024], target_mib=2048, host_id=host["id"])
    dom = client.post("/v1/domains", json=body).json()
    assert [v["guest_visible_mib"] for v in dom["vnodes"]] == [None, None]
    report = {
        "vnodes": [
            {"index": 0, "actual_mib": 1024, "visible_mib": 910},
            {"index": 1, "actual_mib": 1024},
        ]
    }
    r = client.put("/v1/guest/balloon", token=dom["guest_token"], json=report)
    assert r.status_code == 200, r.text
    vnodes = client.get(f"/v1/domains/{dom['id']}").json()["vnodes"]
    assert [(v["actual_mib"], v["guest_visible_mib"]) for v in vnodes] == [
        (1024, 910),
        (1024, None),
    ]
    listed = client.get("/v1/domains").json()["items"][0]["vnodes"]
    assert [v["guest_visible_mib"] for v in listed] == [910, None]
    # The accounting charges what the hypervisor holds, never the guest's view.
    acc = client.get(f"/v1/hosts/{host['id']}/accounting").json()
    assert sum(p["allocated_mib"] for p in acc["pnodes"]) == 2048
    schema = client.get("/openapi.json").json()["components"]["schemas"]["VnodeOut"]
    assert "hypervisor" in schema["properties"]["actual_mib"]["description"]
    assert "MemTotal" in schema["properties"]["guest_visible_mib"]["description"]
