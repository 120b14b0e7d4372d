"""Cluster-wide reads: the settings row and every active host as placement arrays.

Three statements for the whole cluster (hosts, their pnodes, vCPU load per pnode), so ranking
10,000 hosts costs the same number of round trips as ranking one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from service.db.models import Backing, ClusterSettings, Domain, Host, Vnode
from service.engine.place import HostArrays


@dataclass(frozen=True)
class ClusterHost:
    id: str
    name: str
    arrays: HostArrays


def get_cluster(session: Session, *, lock: bool = False) -> ClusterSettings:
    stmt = select(ClusterSettings).where(ClusterSettings.id == 1)
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalars(stmt).first()
    if row is None:
        raise LookupError("cluster settings are missing; run the migrations")
    return row


def cluster_hosts(session: Session, release_domain: Domain | None = None) -> list[ClusterHost]:
    """Active hosts with free MiB and vCPU load per pnode, from the materialized accounting.

    With ``release_domain``, that domain's own memory and vCPUs count as free on its host, so it
    can be compared fairly with hosts it might move to.
    """
    hosts = session.scalars(
        select(Host)
        .where(Host.state == "active")
        .options(selectinload(Host.pnodes))
        .order_by(Host.created_at, Host.id)
    ).all()
    load: dict[tuple[str, int], int] = {}
    for host_id, pnode, n in session.execute(
        select(Domain.host_id, Vnode.home_pnode, func.sum(Vnode.vcpu_count))
        .join(Vnode, Vnode.domain_id == Domain.id)
        .where(Domain.host_id.is_not(None), Vnode.home_pnode.is_not(None))
        .group_by(Domain.host_id, Vnode.home_pnode)
    ).all():
        load[(str(host_id), int(pnode or 0))] = int(n)
    own_mem: dict[int, int] = {}
    if release_domain is not None:
        for vn in release_domain.vnodes:
            if vn.home_pnode is not None:
                key: tuple[str, int] = (release_domain.host_id or "", vn.home_pnode)
                load[key] = load.get(key, 0) - vn.vcpu_count
        for pnode, mib in session.execute(
            select(Backing.pnode, func.sum(Backing.mib))
            .where(Backing.domain_id == release_domain.id)
            .group_by(Backing.pnode)
        ).all():
            own_mem[pnode] = int(mib)
    out = []
    for h in hosts:
        free = np.array(
            [p.capacity_mib - p.allocated_mib - p.claimed_mib for p in h.pnodes], dtype=np.int64
        )
        if release_domain is not None and h.id == release_domain.host_id:
            for pnode, mib in own_mem.items():
                free[pnode] += mib
        out.append(
            ClusterHost(
                id=h.id,
                name=h.name,
                arrays=HostArrays(
                    free_mib=np.maximum(free, 0),
                    cpus=np.array([p.cpus for p in h.pnodes], dtype=np.int64),
                    pdist=np.array(h.distances, dtype=np.int64),
                    load_vcpus=np.array(
                        [max(load.get((h.id, p.index), 0), 0) for p in h.pnodes], dtype=np.int64
                    ),
                ),
            )
        )
    return out
