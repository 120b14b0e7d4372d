"""Cluster-wide reads: the settings row and every active host as placement arrays.

``load_cluster`` reads every active host in one statement, straight into (hosts x pnodes)
matrices (no ORM object per host): ranking 10,000 hosts costs one round trip, and the work
that grows with the cluster is numpy's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import ColumnElement, Select, Text, case, cast, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from service.db.models import Backing, ClusterSettings, Domain, Host, Pnode
from service.engine.place import ClusterArrays


def get_cluster(session: Session, *, lock: bool = False) -> ClusterSettings:
    stmt = select(ClusterSettings).where(ClusterSettings.id == 1)
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalars(stmt).first()
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


def _packed(*values: ColumnElement[int] | InstrumentedAttribute[int]) -> ColumnElement[str]:
    """A host's per-pnode values as one string of space-separated integers, each pnode's index
    first and then its values: one aggregate, and no aggregate ORDER BY (which SQLite < 3.44
    lacks) because every group carries its own index."""
    text: ColumnElement[str] = cast(Pnode.index, Text)
    for v in values:
        text = text + " " + cast(v, Text)
    return func.aggregate_strings(text, " ")


class slit_key(FunctionElement[str]):
    """A short key equal for equal SLITs: md5 of the JSON text on PostgreSQL, so that ranking
    10,000 hosts by topology sorts 32-byte keys in memory rather than kilobytes each on disk;
    the text itself elsewhere (SQLite has no md5, and its clusters are small)."""

    type = Text()
    inherit_cache = True


@compiles(slit_key)
def _slit_key_default(element: slit_key, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS TEXT)"


@compiles(slit_key, "postgresql")
def _slit_key_pg(element: slit_key, compiler: SQLCompiler, **kw: Any) -> str:
    return f"md5(CAST({compiler.process(element.clauses, **kw)} AS TEXT))"


def _cluster_stmt() -> Select[str, str, str, str | None, str]:
    """Per active host: id, name, its SLIT's key, the SLIT itself only on one host per key (the
    text travels once per topology, not 10,000 times) and its packed per-pnode values."""
    key = slit_key(Host.distances)
    one_per_key = (
        select(key.label("key"), func.min(Host.id).label("id"))
        .where(Host.state == "active")
        .group_by(key)
        .subquery()
    )
    per_host = (
        select(
            Pnode.host_id.label("host_id"),
            _packed(
                Pnode.memory_mib - Pnode.reserved_mib - Pnode.allocated_mib - Pnode.claimed_mib,
                Pnode.cpus,
                Pnode.load_vcpus,
            ).label("pnodes"),
        )
        .group_by(Pnode.host_id)
        .subquery()
    )
    return (
        select(
            Host.id,
            Host.name,
            key,
            case((one_per_key.c.id.is_not(None), cast(Host.distances, Text)), else_=None),
            per_host.c.pnodes,
        )
        .join(per_host, per_host.c.host_id == Host.id)
        .outerjoin(one_per_key, one_per_key.c.id == Host.id)
        .where(Host.state == "active")
        .order_by(Host.created_at, Host.id)
    )


_CLUSTER = _cluster_stmt()


def _unpack(packed: list[str]) -> tuple[NDArray[np.int64], ...]:
    """(free, cpus, load) as (hosts x pnodes) matrices from each host's packed string."""
    counts = np.array([t.count(" ") + 1 for t in packed], dtype=np.int64) // 4
    # numpy's own text parser: 8x faster than splitting into 270,000 Python strings.
    flat = np.fromstring(" ".join(packed), dtype=np.int64, sep=" ").reshape(-1, 4)
    rows = np.repeat(np.arange(len(packed)), counts)
    width = int(flat[:, 0].max()) + 1
    out = tuple(np.zeros((len(packed), width), dtype=np.int64) for _ in range(3))
    for k, mat in enumerate(out):
        mat[rows, flat[:, 0]] = flat[:, k + 1]
    return out


def load_cluster(session: Session, release_domain: Domain | None = None) -> ClusterView:
    """Every active host as matrices, in one statement. With ``release_domain``, that domain's
    own memory and vCPUs count as free on its host (to compare it fairly with other hosts)."""
    result = session.execute(_CLUSTER).all()
    if not result:
        empty = np.zeros((0, 0), dtype=np.int64)
        arrays = ClusterArrays(
            free_mib=empty, cpus=empty, load_vcpus=empty, shape=np.zeros(0, np.int64), shapes=()
        )
        return ClusterView(ids=[], names=[], arrays=arrays)
    ids = [r[0] for r in result]
    free, cpus, load = _unpack([r[4] for r in result])
    shape_of: dict[str, int] = {}
    shape = np.array([shape_of.setdefault(r[2], len(shape_of)) for r in result], dtype=np.int64)
    slits = {shape_of[r[2]]: json.loads(r[3]) for r in result if r[3] is not None}
    if release_domain is not None and release_domain.host_id in ids:
        _release(session, release_domain, free, load, ids.index(release_domain.host_id))
    arrays = ClusterArrays(
        free_mib=np.maximum(free, 0),
        cpus=cpus,
        load_vcpus=np.maximum(load, 0),
        shape=shape,
        shapes=tuple(np.array(slits[k], dtype=np.int64) for k in range(len(slits))),
    )
    return ClusterView(ids=ids, names=[r[1] for r in result], arrays=arrays)


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
