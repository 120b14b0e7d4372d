"""Cluster-wide reads: the settings row, every active host as placement arrays, host shapes.

``load_cluster`` gives every active host as (hosts x pnodes) matrices with no ORM object per
host: on PostgreSQL from the worker's kept copy, brought up to date in one statement that reads
only what changed (`cluster_feed`), elsewhere read whole in one statement (`cluster_rows`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Engine, Text, cast, func, select
from sqlalchemy.orm import Session

from service.db.cluster_feed import feed_for
from service.db.cluster_rows import read_whole, slit_key
from service.db.models import Backing, ClusterSettings, Domain, Host
from service.engine.placement import ClusterArrays

# Built once: every target raise reads the settings row (failover admission), and building the
# statement and its cache key anew each time cost as much as executing it.
_SETTINGS = select(ClusterSettings).where(ClusterSettings.id == 1)
_SETTINGS_LOCKED = _SETTINGS.with_for_update()


def get_cluster(session: Session, *, lock: bool = False) -> ClusterSettings:
    row = session.scalars(_SETTINGS_LOCKED if lock else _SETTINGS).first()
    if row is None:
        raise LookupError("cluster settings are missing; run the migrations")
    return row


@dataclass(frozen=True)
class ClusterView:
    """Every active host, in creation order: ids and names, and the placement matrices."""

    ids: list[str]
    names: list[str]
    arrays: ClusterArrays

    def only(self, host_id: str) -> ClusterView:
        """The same view restricted to one host (empty when it is not an active host)."""
        keep = [i for i, h in enumerate(self.ids) if h == host_id]
        a = self.arrays
        return ClusterView(
            ids=[self.ids[i] for i in keep],
            names=[self.names[i] for i in keep],
            arrays=ClusterArrays(
                free_mib=a.free_mib[keep],
                cpus=a.cpus[keep],
                load_vcpus=a.load_vcpus[keep],
                shape=a.shape[keep],
                shapes=a.shapes,
            ),
        )


def load_cluster(session: Session, release_domain: Domain | None = None) -> ClusterView:
    """Every active host as matrices: on PostgreSQL the worker's kept copy brought up to date
    (`service.db.cluster_feed`), elsewhere one statement. With ``release_domain``, that domain's
    own memory and vCPUs count as free on its host (to compare it fairly with other hosts)."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        rows = feed_for(bind if isinstance(bind, Engine) else bind.engine).rows(session)
    else:
        rows, _ = read_whole(session)
    free, load = rows.free, rows.load
    if release_domain is not None and release_domain.host_id in rows.ids:
        free, load = free.copy(), load.copy()  # the kept rows are shared
        _release(session, release_domain, free, load, rows.ids.index(release_domain.host_id))
    shape_of: dict[str, int] = {}
    shape = np.array([shape_of.setdefault(k, len(shape_of)) for k in rows.keys], dtype=np.int64)
    arrays = ClusterArrays(
        free_mib=np.maximum(free, 0),
        cpus=rows.cpus,
        load_vcpus=np.maximum(load, 0),
        shape=shape,
        shapes=tuple(np.array(json.loads(rows.slits[k]), dtype=np.int64) for k in shape_of),
    )
    return ClusterView(ids=rows.ids, names=rows.names, arrays=arrays)


def _release(
    session: Session, domain: Domain, free: NDArray[np.int64], load: NDArray[np.int64], row: int
) -> None:
    """Give back, in place, what the domain holds on its own host (its row of the matrices)."""
    for vn in domain.vnodes:
        if vn.home_pnode is not None:
            load[row, vn.home_pnode] -= vn.vcpu_count
    for pnode, mib in session.execute(
        select(Backing.pnode, func.sum(Backing.mib))
        .where(Backing.domain_id == domain.id)
        .group_by(Backing.pnode)
    ).all():
        free[row, pnode] += int(mib)


@dataclass(frozen=True)
class HostShapes:
    """The distinct topologies of the hosts that are not offline, in order of first appearance
    (creation order), each with its first host; and how many hosts there are in all."""

    first_host_ids: list[str]
    distances: list[list[list[int]]]
    hosts: int


def host_shapes(session: Session) -> HostShapes:
    """One statement, one row per distinct topology: no ORM object per host."""
    ranked = (
        select(
            Host.id.label("id"),
            Host.created_at.label("created_at"),
            cast(Host.distances, Text).label("slit"),
            func.row_number()
            .over(partition_by=slit_key(Host.distances), order_by=(Host.created_at, Host.id))
            .label("nth"),
            func.count().over().label("hosts"),
        )
        .where(Host.state != "offline")
        .subquery()
    )
    rows = session.execute(
        select(ranked.c.id, ranked.c.slit, ranked.c.hosts)
        .where(ranked.c.nth == 1)
        .order_by(ranked.c.created_at, ranked.c.id)
    ).all()
    return HostShapes(
        first_host_ids=[r[0] for r in rows],
        distances=[json.loads(r[1]) for r in rows],
        hosts=int(rows[0][2]) if rows else 0,
    )


def hosts_by_state(session: Session) -> dict[str, int]:
    """How many hosts are in each state (every state named, zero included): one statement."""
    counts = dict.fromkeys(("active", "maintenance", "offline"), 0)
    for state, n in session.execute(select(Host.state, func.count()).group_by(Host.state)).all():
        counts[state] = int(n)
    return counts


def domain_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Domain)) or 0)
