"""What the failover planner reads (issue 26): every host as (hosts x pnodes) matrices, what
squeezing could give back per pnode, and the protected domains with their restart shapes.

Two statements whatever the cluster's size, or only a few hosts' rows for an admission check:
the hosts (state, agent, SLIT key, and per host its pnodes' free MiB and its squeezable MiB per
pnode aggregated in the database, each packed into one string that numpy parses), then the
protected domains (SLIT key and its vnodes' targets and vCPUs packed into one string). Equal
domain shapes are recognised by their text, so each distinct shape is parsed once (200,000
domains of the benchmark have 23,317 shapes). No ORM object, no Python object per vnode.

`changed_since` says which hosts changed since a snapshot (PostgreSQL): `hosts.changed_xid` is
stamped by triggers when a host's counters, state or SLIT change (migration i18_cluster_feed),
and when a domain on it, its vnodes' targets or its backing change (migration
failover_stamps): everything the planner reads of a host and its domains.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    Text,
    case,
    cast,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.orm import Session

from service.db.cluster_rows import slit_key
from service.db.models import Backing, Domain, Host, Pnode, Vnode
from service.db.session import make_engine

IntArray = NDArray[np.int64]

# The domains a plan protects: those that run (or are on their way to run) on a host.
PROTECTABLE_STATES = ("running", "migrating", "restarting")


@dataclass(frozen=True)
class HostRows:
    """Hosts in creation order: ids, names, states, their agents' judgement (None: never took a
    lease), and the planner's matrices (zero-padded past a host's pnodes); ``slits`` maps each
    SLIT key to its text, ``keys`` is each host's key."""

    ids: list[str]
    names: list[str]
    states: list[str]
    agents: list[str | None]
    keys: list[str]
    slits: dict[str, str]
    free_mib: IntArray
    squeezable_mib: IntArray

    def index(self) -> dict[str, int]:
        return {h: i for i, h in enumerate(self.ids)}


@dataclass(frozen=True)
class ProtectedRows:
    """The protected domains, by id: ids, names, host ids, and per domain the key of its shape
    (``shape_keys``, equal for equal shapes) into ``shapes``: (restart MiB per vnode, vCPUs per
    vnode, virtual distances)."""

    ids: list[str]
    names: list[str]
    host_ids: list[str]
    shape_keys: list[str]
    shapes: dict[str, tuple[IntArray, IntArray, IntArray]] = field(default_factory=dict)

    def n_vnodes(self, i: int) -> int:
        return int(self.shapes[self.shape_keys[i]][0].shape[0])


def _packed(*values: Any) -> ColumnElement[str]:
    """Values of a group's rows as one string of space-separated integers, each row's values in
    turn (no aggregate ORDER BY, which SQLite < 3.44 lacks: every row carries its index)."""
    out: ColumnElement[str] = cast(values[0], Text)
    for v in values[1:]:
        out = out + " " + cast(v, Text)
    return func.aggregate_strings(out, " ")


# What squeezing every running, cooperative domain down to its dynamic_min gives back per
# (host, pnode): the engine's squeeze scales every backing cell of a domain alike (shrink), so a
# cell x gives back x * (target - dynamic_min) / target; floored per cell, never more than the
# squeeze really frees (its rounding moves each cell by less than one MiB, floor or ceiling).
def _squeezable(host_ids: Sequence[str] | None) -> Any:
    per_cell = Backing.mib * (Domain.target_mib - Domain.dynamic_min_mib) // Domain.target_mib
    per_pnode = (
        select(
            Backing.host_id.label("host_id"),
            Backing.pnode.label("pnode"),
            func.sum(per_cell).label("mib"),
        )
        .join(Domain, Domain.id == Backing.domain_id)
        .where(
            Domain.state == "running",
            Domain.uncooperative.is_(False),
            Domain.target_mib > Domain.dynamic_min_mib,
        )
        .group_by(Backing.host_id, Backing.pnode)
    )
    if host_ids is not None:
        per_pnode = per_pnode.where(Backing.host_id.in_(list(host_ids)))
    sub = per_pnode.subquery()
    return (
        select(sub.c.host_id, _packed(sub.c.pnode, sub.c.mib).label("packed"))
        .where(sub.c.mib > 0)
        .group_by(sub.c.host_id)
        .subquery()
    )


def _hosts_stmt(host_ids: Sequence[str] | None) -> Select[Any]:
    free = Pnode.memory_mib - Pnode.reserved_mib - Pnode.allocated_mib - Pnode.claimed_mib
    pnodes = select(Pnode.host_id.label("host_id"), _packed(Pnode.index, free).label("packed"))
    if host_ids is not None:
        pnodes = pnodes.where(Pnode.host_id.in_(list(host_ids)))
    per_host = pnodes.group_by(Pnode.host_id).subquery()
    sq = _squeezable(host_ids)
    key = slit_key(Host.distances)
    slit: ColumnElement[Any] = cast(Host.distances, Text)
    if host_ids is None:  # the SLIT's text once per distinct SLIT
        first = select(key.label("key"), func.min(Host.id).label("id")).group_by(key).subquery()
        slit = case((first.c.id.is_not(None), slit), else_=None)
    stmt = (
        select(
            Host.id, Host.name, Host.state, Host.agent, key, slit, per_host.c.packed, sq.c.packed
        )
        .join(per_host, per_host.c.host_id == Host.id)
        .outerjoin(sq, sq.c.host_id == Host.id)
        .order_by(Host.created_at, Host.id)
    )
    if host_ids is None:
        return stmt.outerjoin(first, first.c.id == Host.id)
    return stmt.where(Host.id.in_(list(host_ids)))


def _cells(packed: Sequence[str | None], n_rows: int, width: int) -> IntArray:
    """(rows x width) matrix from each row's "index value index value ..." string."""
    out = np.zeros((n_rows, width), dtype=np.int64)
    have = [i for i, p in enumerate(packed) if p]
    if not have:
        return out
    texts = [packed[i] or "" for i in have]
    counts = np.array([t.count(" ") + 1 for t in texts], dtype=np.int64) // 2
    flat = np.fromstring(" ".join(texts), dtype=np.int64, sep=" ").reshape(-1, 2)
    rows = np.repeat(np.array(have, dtype=np.int64), counts)
    out[rows, flat[:, 0]] = np.maximum(flat[:, 1], 0)
    return out


def load_hosts(
    session: Session, *, host_ids: Sequence[str] | None = None, width: int = 0
) -> HostRows:
    """Every host (a failed host may be in maintenance or offline), or only ``host_ids``, with
    its pnodes' free and squeezable MiB (at least ``width`` columns)."""
    if host_ids is None:
        _tune(session)
    rows = session.execute(_hosts_stmt(host_ids)).all()
    slits = {str(r[4]): str(r[5]) for r in rows if r[5] is not None}
    packed_free = [str(r[6]) for r in rows]
    width = max(width, *(int(_width(p)) for p in packed_free), 1) if rows else max(width, 1)
    return HostRows(
        ids=[str(r[0]) for r in rows],
        names=[str(r[1]) for r in rows],
        states=[str(r[2]) for r in rows],
        agents=[None if r[3] is None else str(r[3]) for r in rows],
        keys=[str(r[4]) for r in rows],
        slits=slits,
        free_mib=_cells(packed_free, len(rows), width),
        squeezable_mib=_cells([r[7] for r in rows], len(rows), width),
    )


def _width(packed: str) -> int:
    """The number of pnodes in a host's packed pnodes (their indices are 0..n-1)."""
    return (packed.count(" ") + 1) // 2


def parse_slit(text_: str) -> IntArray:
    out: list[list[int]] = json.loads(text_)
    return np.array(out, dtype=np.int64)


def _picked(selector: Sequence[tuple[str, str]], host_ids: Sequence[str] | None) -> list[Any]:
    """The conditions on a domain to be protected."""
    out: list[Any] = [Domain.host_id.is_not(None), Domain.state.in_(PROTECTABLE_STATES)]
    out += [Domain.labels[key].as_string() == value for key, value in selector]
    if host_ids is not None:
        out.append(Domain.host_id.in_(list(host_ids)))
    return out


# Parsed virtual SLITs by key, shared by the worker's reads (a cluster has a few dozen).
_SLITS: dict[str, IntArray] = {}


def _slits(session: Session, wanted: dict[str, str]) -> dict[str, IntArray]:
    """The parsed SLIT of each key in ``wanted`` (key -> a domain that has it): those not seen
    yet are read by primary key, one statement."""
    missing = {k: d for k, d in wanted.items() if k not in _SLITS}
    if missing:
        if len(_SLITS) > 10_000:
            _SLITS.clear()
        key = slit_key(Domain.distances)
        for k, t in session.execute(
            select(key, cast(Domain.distances, Text)).where(Domain.id.in_(list(missing.values())))
        ).all():
            _SLITS[str(k)] = parse_slit(str(t))
    return {k: _SLITS[k] for k in wanted}


def _tune(session: Session) -> None:
    """For this transaction's big reads (PostgreSQL): sorts and aggregates in memory, and no
    JIT compilation (it costs more than it saves on these statements)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL work_mem = '64MB'"))
        session.execute(text("SET LOCAL jit = off"))


def load_protected(
    session: Session,
    selector: Sequence[tuple[str, str]],
    *,
    host_ids: Sequence[str] | None = None,
    known: dict[str, tuple[IntArray, IntArray, IntArray]] | None = None,
) -> ProtectedRows:
    """The domains the selector picks (every label must match; empty: every domain) that run on
    a host, only on ``host_ids`` when given: one statement. A domain's shape key is its SLIT's
    key and its vnodes' packed text; each distinct key is parsed once (``known``: keys already
    parsed, which the answer shares)."""
    key = slit_key(Domain.distances)
    stmt = (
        select(
            Domain.id,
            Domain.name,
            Domain.host_id,
            key,
            _packed(Vnode.index, Vnode.target_mib, Vnode.vcpu_count),
        )
        .join(Vnode, Vnode.domain_id == Domain.id)
        .where(*_picked(selector, host_ids))
        .group_by(Domain.id)
        .order_by(Domain.id)
    )
    if host_ids is None:
        _tune(session)
    rows = session.execute(stmt).all()
    shapes = dict(known or {})
    keys = [f"{r[3]}|{r[4]}" for r in rows]
    new = {k: i for i, k in enumerate(keys) if k not in shapes}
    slits = _slits(session, {str(rows[i][3]): str(rows[i][0]) for i in new.values()})
    for k, i in new.items():
        cells = np.fromstring(str(rows[i][4]), dtype=np.int64, sep=" ").reshape(-1, 3)
        cells = cells[np.argsort(cells[:, 0], kind="stable")]
        shapes[k] = (cells[:, 1].copy(), cells[:, 2].copy(), slits[str(rows[i][3])])
    return ProtectedRows(
        ids=[str(r[0]) for r in rows],
        names=[str(r[1]) for r in rows],
        host_ids=[str(r[2]) for r in rows],
        shape_keys=keys,
        shapes=shapes,
    )


# --------------------------------------------------------------------------- what changed

# The statement's snapshot, and whether its transaction has written nothing.
_SNAPSHOT = cast(literal_column("pg_current_snapshot()"), Text)
_CLEAN: ColumnElement[bool] = literal_column("pg_current_xact_id_if_assigned() IS NULL")
# Which database this is: a database dropped and created again under the same name is another.
_DB: ColumnElement[int] = literal_column(
    "(SELECT oid FROM pg_database WHERE datname = current_database())"
)
_RECENT = text(
    "hosts.changed_xid >= CAST(CAST(pg_snapshot_xmin(CAST(:b_snap AS pg_snapshot)) AS text)"
    " AS bigint)"
)
_UNSEEN = text(
    "NOT pg_visible_in_snapshot("
    "CAST(CAST(hosts.changed_xid AS text) AS xid8), CAST(:b_snap AS pg_snapshot))"
)


def snapshot(session: Session) -> tuple[str, int]:
    """This statement's snapshot and the database's oid (PostgreSQL)."""
    at, db = session.execute(select(_SNAPSHOT, _DB)).one()
    return str(at), int(db)


@dataclass(frozen=True)
class Changed:
    """The hosts changed since a snapshot, how many hosts there are, and the statement's own
    snapshot, whether its transaction is clean (has written nothing) and the database's oid."""

    host_ids: list[str]
    n_hosts: int
    snapshot: str
    clean: bool
    database: int


def changed_since(session: Session, snap: str) -> Changed:
    """The hosts whose last change (of anything the planner reads) is not visible in ``snap``:
    one indexed statement (PostgreSQL only)."""
    header = select(
        _SNAPSHOT.label("snap"),
        select(func.count()).select_from(Host).scalar_subquery().label("n"),
        _CLEAN.label("clean"),
        _DB.label("db"),
    ).subquery()
    changed = select(Host.id.label("id")).where(_RECENT, _UNSEEN).subquery()
    rows = session.execute(
        select(header, changed.c.id).select_from(header.outerjoin(changed, text("true"))),
        {"b_snap": snap},
    ).all()
    return Changed(
        host_ids=[str(r[4]) for r in rows if r[4] is not None],
        n_hosts=int(rows[0][1]),
        snapshot=str(rows[0][0]),
        clean=bool(rows[0][2]),
        database=int(rows[0][3]),
    )


def domain_states(session: Session, domain_ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    """domain id -> (state, host id) for the domains that still exist."""
    if not domain_ids:
        return {}
    rows = session.execute(
        select(Domain.id, Domain.state, Domain.host_id).where(Domain.id.in_(list(domain_ids)))
    ).all()
    return {str(d): (str(s), None if h is None else str(h)) for d, s, h in rows}


_CLEAN_ENGINES: dict[str, Engine] = {}
_CLEAN_LOCK = threading.Lock()


@contextmanager
def clean_session(bind: Engine | Connection) -> Iterator[Session]:
    """A session of its own on the same database, outside the caller's transaction, for reads
    of committed rows only (rolled back at the end). Its connection is not the worker's pool's:
    it is taken while the caller may hold locks others wait on, so it must not wait for a pooled
    connection those others hold. One connection, kept (callers take it one at a time)."""
    engine = bind if isinstance(bind, Engine) else bind.engine
    url = engine.url.render_as_string(hide_password=False)
    with _CLEAN_LOCK:
        own = _CLEAN_ENGINES.get(url)
        if own is None:
            own = _CLEAN_ENGINES[url] = make_engine(url, pool_size=1, max_overflow=0)
    with Session(own) as session:
        try:
            yield session
        finally:
            session.rollback()
