"""A host's accounting for an agent's batch report that changes something, read as plain rows.

A report that moves the pools' sizes reads every domain of the host with its vnodes. Loaded as
ORM rows (`load_host_accounting`) they were a third of such a report's CPU: two hundred mapped
instances built, and every attribute read through the ORM afterwards. A report reads a few
columns of them and writes them only through `apply`, so here they are plain objects with
those columns (`ReportedDomain`, `ReportedVnode`), read by Core statements; the host and its
pnodes stay mapped rows, locked as the loader locks them. Any other column of a domain is not
there: reading one raises AttributeError, as the lean loader's deferred columns raise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from typing import cast as typed

import numpy as np
from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    String,
    bindparam,
    cast,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session

from service.db.accounting import HostAccounting, live_claim
from service.db.loaders import host_stmt
from service.db.models import Domain, Host
from service.db.tables import BACKING, CLAIMS, DOMAINS, VNODES


@dataclass(slots=True, kw_only=True)
class ReportedVnode:
    """The columns of a vnode that a report reads (and `absorb` sets: `actual_mib`)."""

    index: int
    size_mib: int
    target_mib: int
    actual_mib: int | None
    home_pnode: int | None
    vcpu_count: int


@dataclass(slots=True, kw_only=True)
class ReportedDomain:
    """The columns of a domain that a report reads, and its vnodes in index order."""

    id: str
    block_mib: int
    target_mib: int
    uncooperative: bool
    last_progress_at: datetime | None
    target_set_at: datetime
    vnodes: list[ReportedVnode] = field(default_factory=list)


_HOST = host_stmt(lock=True).where(Host.id == bindparam("b_host"))
_DOMAIN_COLS = (
    DOMAINS.c.id,
    DOMAINS.c.block_mib,
    DOMAINS.c.target_mib,
    DOMAINS.c.uncooperative,
    DOMAINS.c.last_progress_at,
    DOMAINS.c.target_set_at,
)
_VNODE_COLS = (
    VNODES.c.index,
    VNODES.c.size_mib,
    VNODES.c.target_mib,
    VNODES.c.actual_mib,
    VNODES.c.home_pnode,
    VNODES.c.vcpu_count,
)
_ORDER = (DOMAINS.c.created_at, DOMAINS.c.id)  # as the loader orders them: events follow it
# PostgreSQL: one row per domain, its vnodes' columns as arrays in index order.
_DOMAIN_ROWS = (
    select(
        *_DOMAIN_COLS, *(func.array_agg(aggregate_order_by(c, VNODES.c.index)) for c in _VNODE_COLS)
    )
    .join(VNODES, VNODES.c.domain_id == DOMAINS.c.id)
    .where(DOMAINS.c.host_id == bindparam("b_host"))
    .group_by(DOMAINS.c.id)
    .order_by(*_ORDER)
)
# Elsewhere (SQLite: no arrays): one row per vnode.
_VNODE_ROWS = (
    select(*_DOMAIN_COLS, *_VNODE_COLS)
    .join(VNODES, VNODES.c.domain_id == DOMAINS.c.id)
    .where(DOMAINS.c.host_id == bindparam("b_host"))
    .order_by(*_ORDER, VNODES.c.index)
)
# The host's backing cells, then its live claims per pnode as (NULL, -1, pnode, MiB).
_CELLS = union_all(
    select(BACKING.c.domain_id, BACKING.c.vnode, BACKING.c.pnode, BACKING.c.mib).where(
        BACKING.c.host_id == bindparam("b_host")
    ),
    select(
        literal(None, String()),
        literal(-1, Integer()),
        CLAIMS.c.pnode,
        cast(func.sum(CLAIMS.c.mib), BigInteger()),
    )
    .where(CLAIMS.c.host_id == bindparam("b_host"), live_claim(bindparam("b_now")))
    .group_by(CLAIMS.c.pnode),
)


def load_report_accounting(session: Session, host_id: str, now: datetime) -> HostAccounting | None:
    """The host (locked, with its pnodes), its domains and vnodes as plain rows, their backing
    and the claims live at `now`, in three statements; None when there is no such host."""
    host = session.scalars(_HOST, {"b_host": host_id}).unique().one_or_none()
    if host is None:
        return None
    conn = session.connection()
    domains = _domains(conn, host_id)
    p = len(host.pnodes)
    backing = {d.id: np.zeros((len(d.vnodes), p), dtype=np.int64) for d in domains}
    claimed = np.zeros(p, dtype=np.int64)
    for domain_id, vnode, pnode, mib in conn.execute(_CELLS, {"b_host": host_id, "b_now": now}):
        if vnode < 0:
            claimed[pnode] = mib
        elif domain_id in backing:
            backing[domain_id][vnode, pnode] = mib
    # The stand-ins carry every column that the report's rules and `apply` read of a Domain.
    rows = typed(list[Domain], domains)
    return HostAccounting(host=host, domains=rows, backing=backing, claimed_mib=claimed)


def _domains(conn: Connection, host_id: str) -> list[ReportedDomain]:
    if conn.dialect.name == "postgresql":
        return [
            _domain(row, [_vnode(v) for v in zip(*row[6:], strict=True)])
            for row in conn.execute(_DOMAIN_ROWS, {"b_host": host_id})
        ]
    domains: dict[str, ReportedDomain] = {}
    for row in conn.execute(_VNODE_ROWS, {"b_host": host_id}):
        domain = domains.get(row[0])
        if domain is None:
            domain = domains[row[0]] = _domain(row, [])
        domain.vnodes.append(_vnode(row[6:]))
    return list(domains.values())


def _domain(row: Any, vnodes: list[ReportedVnode]) -> ReportedDomain:
    return ReportedDomain(
        id=row[0],
        block_mib=row[1],
        target_mib=row[2],
        uncooperative=row[3],
        last_progress_at=row[4],
        target_set_at=row[5],
        vnodes=vnodes,
    )


def _vnode(values: Sequence[Any]) -> ReportedVnode:
    """A vnode from its `_VNODE_COLS`, in that order."""
    index, size_mib, target_mib, actual_mib, home_pnode, vcpu_count = values
    return ReportedVnode(
        index=index,
        size_mib=size_mib,
        target_mib=target_mib,
        actual_mib=actual_mib,
        home_pnode=home_pnode,
        vcpu_count=vcpu_count,
    )
