"""Placement previews and admission advice: where a domain would go, and why it cannot.

Nothing here writes: the ranking reads the materialized accounting of every active host, as
domain creation does, so a preview answers what a create would do right now.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.core.domains import (
    I64,
    Spec,
    build_spec,
    host_distances_of,
    initial_demand,
    load_domain,
    topology_of,
)
from service.db.cluster import ClusterHost, cluster_hosts, get_cluster
from service.db.models import Domain, Host
from service.engine.distribute import distribute
from service.engine.errors import InfeasibleError
from service.engine.place import Placement, rank_hosts
from service.engine.topology import VirtualTopology
from service.errors import NotFound
from service.schemas.domains import PlacementRequest

DEFAULT_LIMIT = 10


@dataclass(frozen=True)
class Ranked:
    host_id: str
    host_name: str
    placement: Placement
    max_feasible_mib: int
    free_mib: int
    squeezable_mib: int


def _max_feasible(
    host: ClusterHost, topo: VirtualTopology, mapping: I64, dynamic_max_mib: int, policy: str
) -> int:
    """The largest target this host could back with this mapping now (<= dynamic max)."""
    k = topo.n_vnodes
    if mapping.shape != (k,) or (mapping < 0).any() or (mapping >= host.arrays.cpus.size).any():
        return 0
    try:
        distribute(
            dynamic_max_mib,
            topo.size_mib,
            host.arrays.free_mib,
            mapping,
            topo.distances,
            host.arrays.pdist,
            "proportional" if policy == "explicit" else policy,  # type: ignore[arg-type]
            block_mib=topo.block_mib,
            vcpu_weight=topo.vcpus_per_vnode(),
        )
    except InfeasibleError as exc:
        return exc.max_feasible_mib
    return dynamic_max_mib


def squeezable_mib(session: Session, host_ids: list[str]) -> dict[str, int]:
    """What a squeeze could take back on each host at most: every running, cooperative
    domain's target above its dynamic minimum (one statement)."""
    if not host_ids:
        return {}
    rows = session.execute(
        select(Domain.host_id, func.sum(Domain.target_mib - Domain.dynamic_min_mib))
        .where(
            Domain.host_id.in_(host_ids),
            Domain.state == "running",
            Domain.uncooperative.is_(False),
        )
        .group_by(Domain.host_id)
    ).all()
    found = {str(h): int(n or 0) for h, n in rows}
    return {h: found.get(h, 0) for h in host_ids}


def rank(
    session: Session,
    topo: VirtualTopology,
    demand: I64,
    dynamic_max_mib: int,
    policy: str,
    hosts: list[ClusterHost],
    limit: int,
) -> list[Ranked]:
    if not hosts:
        return []
    ranking = rank_hosts(demand, topo.vcpus_per_vnode(), topo.distances, [h.arrays for h in hosts])
    order = ranking.order.tolist()[:limit]
    spare = squeezable_mib(session, [hosts[i].id for i in order])
    return [
        Ranked(
            host_id=hosts[i].id,
            host_name=hosts[i].name,
            placement=ranking.placements[i],
            max_feasible_mib=_max_feasible(
                hosts[i], topo, ranking.placements[i].mapping, dynamic_max_mib, policy
            ),
            free_mib=int(hosts[i].arrays.free_mib.sum()),
            squeezable_mib=spare[hosts[i].id],
        )
        for i in order
    ]


def preview(session: Session, body: PlacementRequest, limit: int) -> list[Ranked]:
    """Rank the active hosts (or just `host_id`) for a domain that does not exist yet."""
    cluster = get_cluster(session)
    spec: Spec = build_spec(
        body, cluster.block_mib, cluster.worst_case_template, host_distances_of(session, body)
    )
    hosts = cluster_hosts(session)
    if body.host_id is not None:
        if session.scalar(select(Host.id).where(Host.id == body.host_id)) is None:
            raise NotFound(f"no host with id {body.host_id}")
        hosts = [h for h in hosts if h.id == body.host_id]
    demand = initial_demand(spec, body.vnode_targets_mib)
    return rank(session, spec.topology, demand, spec.dynamic_max_mib, body.policy, hosts, limit)


def for_domain(session: Session, domain_id: str, limit: int) -> list[Ranked]:
    """Rank every active host for an existing domain (its own host counts it as free)."""
    domain = load_domain(session, domain_id)
    topo = topology_of(domain)
    demand = np.array([vn.target_mib for vn in domain.vnodes], dtype=np.int64)
    hosts = cluster_hosts(session, release_domain=domain)
    return rank(session, topo, demand, domain.dynamic_max_mib, domain.policy, hosts, limit)


def admission_advice(
    session: Session, spec: Spec, demand: I64, policy: str, only: str | None, limit: int = 3
) -> dict[str, object]:
    """What a 409 for a create carries: the best few hosts (or the pinned one, `only`) with
    their reasons and maxima, and whether squeezing one of them would admit the domain."""
    hosts = [h for h in cluster_hosts(session) if only is None or h.id == only]
    ranked = rank(session, spec.topology, demand, spec.dynamic_max_mib, policy, hosts, limit)
    need = int(demand.sum())
    advice: dict[str, object] = {
        "max_feasible_mib": max((r.max_feasible_mib for r in ranked), default=0),
        "hosts": [
            {
                "host_id": r.host_id,
                "host_name": r.host_name,
                "reason": r.placement.reason or "no mapping of the vnodes fits the pnodes",
                "max_feasible_mib": r.max_feasible_mib,
                "free_mib": r.free_mib,
                "squeezable_mib": r.squeezable_mib,
            }
            for r in ranked
        ],
    }
    fits = [r for r in ranked if r.free_mib < need <= r.free_mib + r.squeezable_mib]
    if fits:
        r = fits[0]
        advice["squeeze"] = {
            "host_id": r.host_id,
            "host_name": r.host_name,
            "would_free_mib": need - r.free_mib,
            "request": f'POST /v1/hosts/{r.host_id}/squeeze {{"total_free_mib": {need}}}',
        }
    return advice


__all__ = ["DEFAULT_LIMIT", "Ranked", "admission_advice", "for_domain", "preview", "rank"]
