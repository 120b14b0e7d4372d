"""Reference oracle for ``load_cluster``: ``cluster_hosts``, formerly ``service.db.cluster``.

It builds the same per-host arrays through the ORM, one object per host; production reads the
cluster with ``load_cluster`` in one statement. ``test_cluster_view.py`` checks the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from service.db.models import Backing, Domain, Host
from service.engine.placement import HostArrays


@dataclass(frozen=True)
class ClusterHost:
    id: str
    name: str
    arrays: HostArrays


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
    load = {(h.id, p.index): p.load_vcpus for h in hosts for p in h.pnodes}
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
