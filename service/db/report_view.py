"""A host as its agent's batch report sees it, read as plain rows in three statements.

At the agents' natural rate (every host every 10 s) nearly every report repeats what the service
already holds. Telling so takes the host's lock and two reads of plain rows; the full path
(`load_host_accounting`, `observe`, `apply`) with its ORM rows runs only when the report would
change something. Nothing here writes memory: `apply` stays the only writer of the accounting.
The observation itself (`observed_at` here, each pnode's observed free MiB through `apply`'s
`write_observed_free`) is status the agent owns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    and_,
    bindparam,
    cast,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session

from service.db.models import Domain, Migration, Step
from service.db.raw import PlainTransaction
from service.db.tables import DOMAINS, HOSTS, PNODES, VNODES
from service.vocabulary import ACTIVE_MIGRATION_STATES, GUEST_OPS, StepState


@dataclass(frozen=True, kw_only=True)
class DomainView:
    """One domain's balloon state: the domain-level fields, then its vnodes in index order."""

    target_mib: int
    block_mib: int
    uncooperative: bool
    last_progress_at: datetime | None
    target_set_at: datetime
    pending_pool_steps: bool
    vnode_target_mib: list[int]
    size_mib: list[int]
    actual_mib: list[int | None]


@dataclass(frozen=True, kw_only=True)
class ReportView:
    """The locked host's stored counters per pnode (index order) and the domains on it."""

    drift_flagged: bool
    accounted_free_mib: list[int]  # capacity - claimed - allocated, as the counters hold them
    claimed_mib: list[int]
    observed_free_mib: list[int | None]
    domains: dict[str, DomainView]


# Core statements on the tables (not the mapped classes): no ORM compile or loading step.
_LOCK = (
    update(HOSTS)
    .where(HOSTS.c.id == bindparam("b_host"))
    .values(observed_at=bindparam("b_now"))
    .returning(HOSTS.c.drift_flagged)
)
_FREE = PNODES.c.memory_mib - PNODES.c.reserved_mib - PNODES.c.claimed_mib - PNODES.c.allocated_mib
_PNODE_ROWS = (
    select(
        _FREE,
        PNODES.c.claimed_mib,
        PNODES.c.observed_free_mib,
    )
    .where(PNODES.c.host_id == bindparam("b_host"))
    .order_by(PNODES.c.index)
)
# `pending_guest_op`, its ops as plain parameters: an expanding IN is rendered again on every
# execution, a fixed list is compiled once (a steady report runs this every 10 s per host).
_PENDING = exists().where(
    Step.domain_id == DOMAINS.c.id,
    Step.state == StepState.PENDING,
    Step.op.in_([literal(op) for op in GUEST_OPS]),
)
# A domain's columns that a settled report reads, before its vnodes' (the two forms below).
_DOMAIN_COLS = (
    DOMAINS.c.id,
    DOMAINS.c.target_mib,
    DOMAINS.c.uncooperative,
    DOMAINS.c.last_progress_at,
    DOMAINS.c.target_set_at,
    _PENDING,
)
_VNODE_ROWS = (
    select(
        *_DOMAIN_COLS,
        VNODES.c.target_mib,
        VNODES.c.size_mib,
        VNODES.c.actual_mib,
        DOMAINS.c.block_mib,
    )
    .join(VNODES, VNODES.c.domain_id == DOMAINS.c.id)
    .where(DOMAINS.c.host_id == bindparam("b_host"))
    .order_by(DOMAINS.c.id, VNODES.c.index)
)


def _per_vnode(arrays: Any) -> Any:
    return func.array_agg(aggregate_order_by(arrays, VNODES.c.index))


# PostgreSQL: the same, one row per domain with its vnodes' columns as arrays (a host's ~180
# vnode rows cost more to fetch one by one than the rest of a steady report).
_DOMAIN_ROWS = (
    select(
        *_DOMAIN_COLS,
        _per_vnode(VNODES.c.target_mib),
        _per_vnode(VNODES.c.size_mib),
        _per_vnode(VNODES.c.actual_mib),
        DOMAINS.c.block_mib,
    )
    .join(VNODES, VNODES.c.domain_id == DOMAINS.c.id)
    .where(DOMAINS.c.host_id == bindparam("b_host"))
    .group_by(DOMAINS.c.id)
)


def _per_pnode(values: Any) -> Any:
    return func.array_agg(aggregate_order_by(values, PNODES.c.index))


def _no(column: Any) -> Any:
    return cast(null(), column.type)


# PostgreSQL: the domains' rows and, after them, one row of the pnodes' columns as arrays in
# place of the vnodes' (its domain columns NULL): a round trip fewer on every steady report.
_HOST_ROWS = union_all(
    _DOMAIN_ROWS,
    select(
        *(_no(c) for c in _DOMAIN_COLS[:5]),
        cast(null(), Boolean()),
        _per_pnode(_FREE),
        _per_pnode(PNODES.c.claimed_mib),
        _per_pnode(PNODES.c.observed_free_mib),
        _no(DOMAINS.c.block_mib),
    ).where(PNODES.c.host_id == bindparam("b_host")),
)


def load_report_view(session: Session, host_id: str, now: datetime) -> ReportView | None:
    """Lock the host by stamping its `observed_at` (status: the version does not move), then
    read its pnode counters and its domains' vnodes. None when there is no such host."""
    conn = session.connection()
    flagged = conn.execute(_LOCK, {"b_host": host_id, "b_now": now}).scalar_one_or_none()
    if flagged is None:
        return None
    if conn.dialect.name != "postgresql":
        pnodes = conn.execute(_PNODE_ROWS, {"b_host": host_id}).all()
        return ReportView(
            drift_flagged=flagged,
            accounted_free_mib=[p[0] for p in pnodes],
            claimed_mib=[p[1] for p in pnodes],
            observed_free_mib=[p[2] for p in pnodes],
            domains=_domains_by_vnode(conn, host_id),
        )
    return _from_host_rows(flagged, conn.execute(_HOST_ROWS, {"b_host": host_id}))


async def load_report_view_plain(
    tx: PlainTransaction, host_id: str, now: datetime
) -> ReportView | None:
    """`load_report_view` on a plain connection (PostgreSQL, `db/raw.py`): the same lock and
    the same rows, awaited on the event loop."""
    locked = await tx.rows(_LOCK, {"b_host": host_id, "b_now": now})
    if not locked:
        return None
    return _from_host_rows(locked[0][0], await tx.rows(_HOST_ROWS, {"b_host": host_id}))


def _from_host_rows(flagged: bool, rows: Iterable[Sequence[Any]]) -> ReportView:
    """The view from `_HOST_ROWS`' rows: one per domain, then the host's pnodes as arrays."""
    domains: dict[str, DomainView] = {}
    per_pnode: tuple[list[int], list[int], list[int | None]] = ([], [], [])
    for row in rows:
        if row[0] is None:
            per_pnode = (row[6] or [], row[7] or [], row[8] or [])
        else:
            domains[row[0]] = _view(row, row[6], row[7], row[8])
    return ReportView(
        drift_flagged=flagged,
        accounted_free_mib=per_pnode[0],
        claimed_mib=per_pnode[1],
        observed_free_mib=per_pnode[2],
        domains=domains,
    )


def _view(row: Any, targets: list[int], sizes: list[int], actuals: list[int | None]) -> DomainView:
    """A domain's view from a row of `_DOMAIN_COLS` (then its vnodes' columns, then block_mib)."""
    return DomainView(
        target_mib=row[1],
        block_mib=row[9],
        uncooperative=row[2],
        last_progress_at=row[3],
        target_set_at=row[4],
        pending_pool_steps=row[5],
        vnode_target_mib=targets,
        size_mib=sizes,
        actual_mib=actuals,
    )


def _domains_by_vnode(conn: Connection, host_id: str) -> dict[str, DomainView]:
    """The domains of the host from one row per vnode (SQLite: no arrays)."""
    domains: dict[str, DomainView] = {}
    for row in conn.execute(_VNODE_ROWS, {"b_host": host_id}):
        view = domains.get(row[0])
        if view is None:
            view = domains[row[0]] = _view(row, [], [], [])
        view.vnode_target_mib.append(row[6])
        view.size_mib.append(row[7])
        view.actual_mib.append(row[8])
    return domains


def foreign_domains(session: Session, host_id: str, domain_ids: Sequence[str]) -> set[str]:
    """Of these ids, the domains on another host with no active migration to or from this one
    (an id numa-balloon does not know is not among them). During a migration both hosts may
    see the domain: the destination before the switch, the source until its release step.
    One indexed statement."""
    if not domain_ids:
        return set()
    moving = exists().where(
        Migration.domain_id == Domain.id,
        or_(Migration.destination_host_id == host_id, Migration.source_host_id == host_id),
        Migration.state.in_(ACTIVE_MIGRATION_STATES),
    )
    stmt = select(Domain.id).where(
        Domain.id.in_(sorted(set(domain_ids))),
        Domain.host_id.is_not(None),
        Domain.host_id != host_id,
        ~moving,
    )
    return set(session.scalars(stmt))


_GUEST_VISIBLE = (
    update(VNODES)
    .where(and_(VNODES.c.domain_id == bindparam("b_domain"), VNODES.c.index == bindparam("b_i")))
    .values(guest_visible_mib=bindparam("b_mib"))
)


def write_guest_visible(session: Session, domain_id: str, visible_mib: Mapping[int, int]) -> None:
    """What the guest kernel shows of each reported vnode (status: no version moves)."""
    if visible_mib:
        rows = [{"b_domain": domain_id, "b_i": i, "b_mib": m} for i, m in visible_mib.items()]
        session.connection().execute(_GUEST_VISIBLE, rows)
