"""Placement previews and admission advice: where a domain would go, and why it cannot.

Nothing here writes: the ranking reads the materialized accounting of every active host as
matrices in one statement (`load_cluster`), as domain creation does, so a preview answers what a
create would do right now, at the cost of one vectorized pass however many hosts there are.
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
from service.core.unit import discard
from service.db.cluster import ClusterView, get_cluster, load_cluster
from service.db.models import Domain, Host
from service.engine.distribute import distribute
from service.engine.errors import InfeasibleError
from service.engine.placement import HostArrays, Placement, rank_cluster
from service.engine.topology import VirtualTopology
from service.errors import NotFound
from service.schemas.domains import PlacementRequest
from service.vocabulary import Policy

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
    host: HostArrays, topo: VirtualTopology, mapping: I64, dynamic_max_mib: int, policy: str
) -> int:
    """The largest target this host could back with this mapping now (<= dynamic max)."""
    k = topo.n_vnodes
    if mapping.shape != (k,) or (mapping < 0).any() or (mapping >= host.cpus.size).any():
        return 0
    try:
        distribute(
            target_mib=dynamic_max_mib,
            size_mib=topo.size_mib,
            headroom_mib=host.free_mib,
            home=mapping,
            vdist=topo.distances,
            pdist=host.pdist,
            policy=Policy.PROPORTIONAL if policy == Policy.EXPLICIT else Policy(policy),
            block_mib=topo.block_mib,
            vcpu_count=topo.vcpu_count(),
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


def _host_arrays(view: ClusterView, i: int) -> HostArrays:
    """Host `i` of the cluster matrices as one host's arrays (its own pnodes, unpadded)."""
    a = view.arrays
    pdist = a.shapes[int(a.shape[i])]
    p = pdist.shape[0]
    return HostArrays(
        free_mib=a.free_mib[i, :p], cpus=a.cpus[i, :p], pdist=pdist, load_vcpus=a.load_vcpus[i, :p]
    )


def rank(
    session: Session,
    topo: VirtualTopology,
    demand: I64,
    dynamic_max_mib: int,
    policy: str,
    view: ClusterView,
    limit: int,
    only: str | None = None,
) -> list[Ranked]:
    """The best `limit` hosts of the cluster (or just `only`), best first: one vectorized pass
    over the (hosts x pnodes) matrices, top-k by `argpartition`; only the hosts returned get
    their maximum target computed."""
    if only is not None:
        view = view.only(only)
    if not view.ids:
        return []
    ranking = rank_cluster(
        demand_mib=demand,
        vcpu_count=topo.vcpu_count(),
        vdist=topo.distances,
        cluster=view.arrays,
        limit=limit,
    )
    order = ranking.order.tolist()[:limit]
    spare = squeezable_mib(session, [view.ids[i] for i in order])
    out = []
    for i in order:
        placement = ranking.placement(i)
        arrays = _host_arrays(view, i)
        out.append(
            Ranked(
                host_id=view.ids[i],
                host_name=view.names[i],
                placement=placement,
                max_feasible_mib=_max_feasible(
                    arrays, topo, placement.mapping, dynamic_max_mib, policy
                ),
                free_mib=int(arrays.free_mib.sum()),
                squeezable_mib=spare[view.ids[i]],
            )
        )
    return out


def preview(session: Session, body: PlacementRequest, limit: int) -> list[Ranked]:
    """Rank the active hosts (or just `host_id`) for a domain that does not exist yet.
    Nothing is written: the unit rolls back."""
    discard(session)
    cluster = get_cluster(session)
    spec: Spec = build_spec(
        body, cluster.block_mib, cluster.worst_case_template, host_distances_of(session, body)
    )
    unknown = select(Host.id).where(Host.id == body.host_id)
    if body.host_id is not None and session.scalar(unknown) is None:
        raise NotFound(f"no host with id {body.host_id}")
    view = load_cluster(session)
    demand = initial_demand(spec, body.vnode_targets_mib)
    return rank(
        session,
        spec.topology,
        demand,
        spec.dynamic_max_mib,
        body.policy,
        view,
        limit,
        only=body.host_id,
    )


def for_domain(session: Session, domain_id: str, limit: int) -> list[Ranked]:
    """Rank every active host for an existing domain (its own host counts it as free)."""
    domain = load_domain(session, domain_id)
    topo = topology_of(domain)
    demand = np.array([vn.target_mib for vn in domain.vnodes], dtype=np.int64)
    view = load_cluster(session, release_domain=domain)
    return rank(session, topo, demand, domain.dynamic_max_mib, domain.policy, view, limit)


def admission_advice(
    session: Session, spec: Spec, demand: I64, policy: str, only: str | None, limit: int = 3
) -> dict[str, object]:
    """What a 409 for a create carries: the best few hosts (or the pinned one, `only`) with
    their reasons and maxima, and whether squeezing one of them would admit the domain."""
    view = load_cluster(session)
    ranked = rank(session, spec.topology, demand, spec.dynamic_max_mib, policy, view, limit, only)
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
