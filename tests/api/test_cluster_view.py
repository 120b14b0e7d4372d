"""load_cluster: every active host as matrices in one statement, equal to what the ORM says."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from service.db.cluster import load_cluster
from service.db.invariants import audit
from service.db.models import Domain
from tests.api.client import ApiClient
from tests.api.cluster_reference import cluster_hosts
from tests.api.factories import created, domain_body, host_body
from tests.api.statements import count_statements


def test_matrices_match_the_orm_per_host_and_read_in_one_statement(client: ApiClient) -> None:
    shapes = [(1, 1), (2, 1), (8, 4), (16, 4)]
    hosts = [
        created(client, "/v1/hosts", host_body(f"h{i}", n=n, per_socket=per, memory_mib=32768))
        for i, (n, per) in enumerate(shapes * 2)
    ]
    off = created(client, "/v1/hosts", host_body("off", n=2))
    client.patch(f"/v1/hosts/{off['id']}", json={"state": "offline"})
    domains = [
        created(client, "/v1/domains", domain_body(f"d{i}", [2048] * k, vcpus_per_vnode=3))
        for i, k in enumerate([1, 2, 4, 8, 3, 2])
    ]
    audit(client.app.state.sessionmaker)  # the materialized vCPU load is right, too
    with client.app.state.sessionmaker() as s:
        mine = s.scalars(
            select(Domain).where(Domain.id == domains[3]["id"]).options(selectinload(Domain.vnodes))
        ).one()
        for release in (None, mine):
            view = load_cluster(s, release_domain=release)
            orm = cluster_hosts(s, release_domain=release)
            assert view.ids == [h.id for h in orm] == [str(h["id"]) for h in hosts]
            assert view.names == [h.name for h in orm]
            a = view.arrays
            assert len(a.shapes) == 4
            for i, h in enumerate(orm):
                p = len(h.arrays.free_mib)
                shape = a.shapes[int(a.shape[i])]
                assert np.array_equal(shape, h.arrays.pdist)
                assert a.free_mib[i, :p].tolist() == h.arrays.free_mib.tolist()
                assert a.cpus[i, :p].tolist() == h.arrays.cpus.tolist()
                assert a.load_vcpus[i, :p].tolist() == h.arrays.load_vcpus.tolist()
                assert not a.free_mib[i, p:].any() and not a.cpus[i, p:].any()
            assert a.load_vcpus.sum() == 3 * (20 - (8 if release is not None else 0))
    n, _ = count_statements(
        client, lambda: client.get(f"/v1/domains/{domains[0]['id']}/placements")
    )
    assert n <= 6, n


def test_placements_limit_keeps_the_best_hosts_in_order(client: ApiClient) -> None:
    for i, mib in enumerate([8192, 65536, 16384, 32768]):
        created(client, "/v1/hosts", host_body(f"h{i}", n=2, memory_mib=mib))
    d = created(client, "/v1/domains", domain_body("vm", [4096, 4096]))
    url = f"/v1/domains/{d['id']}/placements"
    every = client.get(url).json()["hosts"]
    assert len(every) == 4
    top = client.get(url, params={"limit": 2}).json()["hosts"]
    assert top == every[:2]
    assert client.get(url, params={"limit": 0}).status_code == 422


def test_template_reads_one_row_per_topology_and_names_the_first_host(client: ApiClient) -> None:
    first16 = created(client, "/v1/hosts", host_body("a16", n=16, memory_mib=4096, per_socket=4))
    for i in range(3):
        created(client, "/v1/hosts", host_body(f"two{i}", n=2))
    created(client, "/v1/hosts", host_body("b16", n=16, memory_mib=4096, per_socket=4))
    off = created(client, "/v1/hosts", host_body("off", n=32, memory_mib=4096, per_socket=8))
    client.patch(f"/v1/hosts/{off['id']}", json={"state": "offline"})
    n, r = count_statements(client, lambda: client.post("/v1/cluster/worst-case-template"))
    assert r.status_code == 200, r.text
    tpl = r.json()
    assert tpl["vnode_count"] == 16 and tpl["source_host_id"] == first16["id"]
    assert tpl["hosts_considered"] == 5
    assert n <= 6, n  # one read for 6 hosts or 10,000


def test_a_topology_whose_first_host_is_offline_still_ranks(client: ApiClient) -> None:
    """Each SLIT's text travels on one active host's row; an offline host of the same shape
    must never be that one (with 8 offline twins, an unfiltered pick would miss 8 times in 9)."""
    twins = [
        created(client, "/v1/hosts", host_body(f"twin{i}", n=4, per_socket=2)) for i in range(9)
    ]
    for h in twins[1:]:
        assert client.patch(f"/v1/hosts/{h['id']}", json={"state": "offline"}).status_code == 200
    d = created(client, "/v1/domains", domain_body("vm", [1024, 1024]))
    assert d["host_id"] == twins[0]["id"]
    ranked = client.get(f"/v1/domains/{d['id']}/placements").json()["hosts"]
    assert [h["host_id"] for h in ranked] == [twins[0]["id"]]
