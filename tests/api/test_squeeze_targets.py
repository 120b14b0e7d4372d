"""A squeeze asked to free memory lowers targets and never raises one (issue #22, item 13).

On the README's 1-node host `one` with the demo's `web`, `squeeze one --free 2048 --dry-run`
proposed raising `web` from 6144 to 16384 MiB: the host had memory to spare, and the policy's one
gamma went to 1, handing all of it out. Handing memory out is `balance`; freeing is not.
"""

from __future__ import annotations

from tests.api.client import ApiClient
from tests.api.factories import created, domain_body, host_body


def _host_with_web(client: ApiClient) -> tuple[str, str]:
    one = created(client, "/v1/hosts", host_body("one", n=1, memory_mib=65536))
    web = domain_body("web", [8192, 8192], target_mib=6144, dynamic_min_mib=4096, host_id=one["id"])
    db = domain_body("db", [8192, 8192], target_mib=16384, dynamic_min_mib=4096, host_id=one["id"])
    created(client, "/v1/domains", db)
    return one["id"], created(client, "/v1/domains", web)["id"]


def test_freeing_memory_on_a_host_with_memory_to_spare_raises_nobody(client: ApiClient) -> None:
    host, web = _host_with_web(client)
    r = client.post(f"/v1/hosts/{host}/squeeze", json={"total_free_mib": 2048, "dry_run": True})
    assert r.status_code == 200, r.text
    plan = {d["domain_id"]: d for d in r.json()["domains"]}
    assert plan[web]["target_mib"] == 6144 and plan[web]["phase"] == "unchanged"
    assert {d["phase"] for d in plan.values()} == {"unchanged"}
    assert r.json()["order"] == []
    per_pnode = client.post(
        f"/v1/hosts/{host}/squeeze", json={"free_mib": {"0": 2048}, "dry_run": True}
    ).json()
    assert {d["phase"] for d in per_pnode["domains"]} == {"unchanged"}
    # Asking to hand the spare memory out is what raises targets.
    shared = client.post(f"/v1/hosts/{host}/squeeze", json={"balance": True, "dry_run": True})
    assert {d["domain_id"]: d["target_mib"] for d in shared.json()["domains"]}[web] == 16384


def test_a_squeeze_that_must_free_memory_takes_it_from_the_domains_above_the_line(
    client: ApiClient,
) -> None:
    host, web = _host_with_web(client)
    # 65536 - 6144 - 16384 = 43008 MiB free: ask for 8192 more than that.
    r = client.post(f"/v1/hosts/{host}/squeeze", json={"total_free_mib": 43008 + 8192})
    assert r.status_code == 200, r.text
    plan = {d["domain_id"]: d for d in r.json()["domains"]}
    assert plan[web]["phase"] == "unchanged"  # web, low in its range, keeps its 6144 MiB
    (db,) = (d for i, d in plan.items() if i != web)
    assert db["phase"] == "decrease" and db["target_mib"] == 16384 - 8192
    assert client.get(f"/v1/domains/{web}").json()["memory"]["target_mib"] == 6144
    assert sum(r.json()["free_mib_after"]) == 43008 + 8192


def test_the_squeeze_fields_say_what_they_do(client: ApiClient) -> None:
    """Issue 27 item 8: `total_free_mib` N left N MiB free while its schema said "MiB to free".
    `keep_total_free_mib`/`keep_free_mib` leave N free, `free_more_mib` frees N more than is
    free now; the old names are accepted as deprecated and mean what they did."""
    host, _web = _host_with_web(client)
    free_now = 65536 - 6144 - 16384
    url = f"/v1/hosts/{host}/squeeze"
    more = client.post(url, json={"free_more_mib": 8192, "dry_run": True})
    assert more.status_code == 200, more.text
    assert sum(more.json()["free_mib_after"]) == free_now + 8192
    keep = client.post(url, json={"keep_total_free_mib": free_now + 8192, "dry_run": True})
    old = client.post(url, json={"total_free_mib": free_now + 8192, "dry_run": True})
    assert keep.json()["domains"] == old.json()["domains"] == more.json()["domains"]
    per_pnode = client.post(url, json={"keep_free_mib": {"0": free_now + 8192}, "dry_run": True})
    assert sum(per_pnode.json()["free_mib_after"]) == free_now + 8192
    two = client.post(url, json={"free_more_mib": 1, "total_free_mib": 1})
    assert two.status_code == 422
    bad = client.post(url, json={"keep_free_mib": {"7": 1}})
    assert bad.json()["errors"][0]["loc"] == ["body", "keep_free_mib", "7"]
    props = client.get("/openapi.json").json()["components"]["schemas"]["SqueezeRequest"][
        "properties"
    ]
    assert props["total_free_mib"]["deprecated"] is True
    assert props["free_mib"]["deprecated"] is True
    assert "afterwards" in props["keep_total_free_mib"]["description"]
    assert "left free" in props["total_free_mib"]["description"]
    assert "beyond what is free now" in props["free_more_mib"]["description"]
