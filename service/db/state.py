"""Load one host's whole state as arrays in a fixed number of queries, whatever its size.

Three statements: the host row (locked when writing) with its pnodes, the domains on it with
their vnodes, and their backing rows with the live claims. Everything the engine needs is then
numpy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from typing import cast as cast_type

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    Integer,
    Select,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.orm import Session, contains_eager, joinedload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.sql.dml import UpdateBase

from service.db.base import utcnow
from service.db.models import Backing, Claim, Domain, Host, Pnode, Vnode
from service.engine.accounting import charge_mib

I64 = NDArray[np.int64]


@dataclass
class HostState:
    """A host's accounting. `domains` are ORM rows (with `backing`); a state loaded for one
    domain's write holds only that domain as a row and everyone else as the `rest_*` sums."""

    host: Host
    domains: list[Domain]
    backing: dict[str, I64]  # domain id -> (V, P)
    claimed_mib: I64  # (P,)
    rest_alloc_mib: I64 | None = None  # (P,) charges of the domains not in `domains`
    rest_load_vcpus: I64 | None = None  # (P,) their vCPUs by home pnode
    capacity_mib: I64 = field(init=False)
    cpus: I64 = field(init=False)
    pdist: I64 = field(init=False)

    def __post_init__(self) -> None:
        self.capacity_mib = np.array([p.capacity_mib for p in self.host.pnodes], dtype=np.int64)
        self.cpus = np.array([p.cpus for p in self.host.pnodes], dtype=np.int64)
        self.pdist = np.array(self.host.distances, dtype=np.int64)
        zeros = np.zeros(self.n_pnodes, dtype=np.int64)
        if self.rest_alloc_mib is None:
            self.rest_alloc_mib = zeros
        if self.rest_load_vcpus is None:
            self.rest_load_vcpus = zeros

    @property
    def n_pnodes(self) -> int:
        return int(self.capacity_mib.shape[0])

    def domain(self, domain_id: str) -> Domain | None:
        return next((d for d in self.domains if d.id == domain_id), None)

    def charges(self) -> dict[str, I64]:
        """Per-domain (V, P) charges: backing, or the reported actual size when larger."""
        if not self.domains:
            return {}
        vmax = max(len(d.vnodes) for d in self.domains)
        n, p = len(self.domains), self.n_pnodes
        x = np.zeros((n, vmax, p), dtype=np.int64)
        actual = np.full((n, vmax), -1, dtype=np.int64)
        home = np.zeros((n, vmax), dtype=np.int64)
        for i, d in enumerate(self.domains):
            k = len(d.vnodes)
            x[i, :k] = self.backing.get(d.id, np.zeros((k, p), dtype=np.int64))
            actual[i, :k] = [-1 if vn.actual_mib is None else vn.actual_mib for vn in d.vnodes]
            home[i, :k] = [vn.home_pnode or 0 for vn in d.vnodes]
        c = charge_mib(backing_mib=x, actual_mib=actual, home=home)
        return {d.id: c[i, : len(d.vnodes)] for i, d in enumerate(self.domains)}

    def allocated_mib(self, charges: dict[str, I64] | None = None) -> I64:
        charges = self.charges() if charges is None else charges
        assert self.rest_alloc_mib is not None
        total = self.rest_alloc_mib.copy()
        for c in charges.values():
            total += c.sum(axis=0)
        return total

    def headroom_mib(self, excluding: str | None = None) -> I64:
        """What one domain may hold per pnode: capacity minus claims and everyone else."""
        charges = self.charges()
        others = {k: v for k, v in charges.items() if k != excluding}
        out: I64 = self.capacity_mib - self.claimed_mib - self.allocated_mib(others)
        return out

    def load_vcpus(self, excluding: str | None = None) -> I64:
        assert self.rest_load_vcpus is not None
        load = self.rest_load_vcpus.copy()
        for d in self.domains:
            if d.id == excluding:
                continue
            for vn in d.vnodes:
                if vn.home_pnode is not None:
                    load[vn.home_pnode] += vn.vcpu_count
        return load


def live_claim(now: Any) -> ColumnElement[bool]:
    """A claim counts while it is held (no expiry: its migration is past `planned`) or leased."""
    return or_(Claim.expires_at.is_(None), Claim.expires_at > now)


def host_stmt(lock: bool) -> Select[Host]:
    """The host with its pnodes in one statement; locking both when writing.

    The pnode rows are locked with the host, not only read with it: under READ COMMITTED a
    `FOR UPDATE` that waited for another writer re-reads only the rows it locks, and returns the
    others as they were when it started. Pnode counters read that way were stale by one squeeze,
    and a writer that compared its new counters with them skipped a write that was needed (the
    concurrent-squeeze drift). `populate_existing` refreshes rows this session already held.
    """
    if not lock:
        return select(Host).options(joinedload(Host.pnodes))
    return (
        select(Host)
        .join(Host.pnodes)
        .options(contains_eager(Host.pnodes))
        .order_by(Host.id, Pnode.index)
        .with_for_update(of=[Host, Pnode])
        .execution_options(populate_existing=True)
    )


def _claims_stmt(host_id: str, now: datetime) -> Select[str, int, int, int]:
    """Live claims per pnode as (NULL, -1, pnode, MiB) rows, to follow backing rows."""
    return (
        select(
            literal(None, String()),
            literal(-1, Integer()),
            Claim.pnode,
            cast(func.sum(Claim.mib), BigInteger()),
        )
        .where(Claim.host_id == host_id, live_claim(now))
        .group_by(Claim.pnode)
    )


def load_host_state(
    session: Session,
    host_id: str,
    *,
    lock: bool,
    host: Host | None = None,
    now: datetime | None = None,
) -> HostState | None:
    """Three statements: the host with its pnodes (locked when writing), the domains with their
    vnodes, and backing plus the claims live at `now` (the request's clock; default: the wall
    clock). `host`: already loaded (and locked) by the caller."""
    if host is None:
        host = session.scalars(host_stmt(lock).where(Host.id == host_id)).unique().one_or_none()
    if host is None:
        return None
    # Unlocked (read-only) callers run each statement on its own READ COMMITTED snapshot: a
    # domain deleted between the two statements arrives without vnodes. It no longer exists.
    domains = [
        d
        for d in session.scalars(
            select(Domain)
            .where(Domain.host_id == host_id)
            .options(joinedload(Domain.vnodes))
            .order_by(Domain.created_at, Domain.id)
            .execution_options(populate_existing=lock)
        )
        .unique()
        .all()
        if d.vnodes
    ]
    p = len(host.pnodes)
    backing = {d.id: np.zeros((len(d.vnodes), p), dtype=np.int64) for d in domains}
    claimed = np.zeros(p, dtype=np.int64)
    rows = session.execute(
        select(Backing.domain_id, Backing.vnode, Backing.pnode, Backing.mib)
        .where(Backing.host_id == host_id)
        .union_all(_claims_stmt(host_id, utcnow() if now is None else now))
    ).all()
    for domain_id, vnode, pnode, mib in rows:
        if vnode < 0:
            claimed[pnode] = mib
        elif domain_id in backing:
            backing[domain_id][vnode, pnode] = mib
    return HostState(host=host, domains=domains, backing=backing, claimed_mib=claimed)


# Built once: executing a prebuilt statement reuses its memoized cache key and compiled form.
LOCK_DOMAIN_HOST = (
    host_stmt(lock=True)
    .join(Domain, Domain.host_id == Host.id)
    .where(Domain.id == bindparam("b_domain"))
)
_DOMAIN_ON_HOST = (
    select(Domain)
    .where(Domain.id == bindparam("b_domain"), Domain.host_id == bindparam("b_host"))
    .options(joinedload(Domain.vnodes))
    .execution_options(populate_existing=True)
)
# kind 0: a vnode (domain, index, home pnode or -1, actual MiB or -1, vCPUs)
# kind 1: a backing cell (domain, vnode, pnode, MiB, 0); kind 2: claims (NULL, -1, pnode, MiB, 0)
_HOST_ROWS = union_all(
    select(
        literal(0, Integer()),
        Vnode.domain_id,
        Vnode.index,
        func.coalesce(Vnode.home_pnode, -1),
        func.coalesce(Vnode.actual_mib, -1),
        Vnode.vcpu_count,
    )
    .join(Domain, Domain.id == Vnode.domain_id)
    .where(Domain.host_id == bindparam("b_host")),
    select(
        literal(1, Integer()),
        Backing.domain_id,
        Backing.vnode,
        Backing.pnode,
        Backing.mib,
        literal(0, Integer()),
    ).where(Backing.host_id == bindparam("b_host")),
    select(
        literal(2, Integer()),
        literal(None, String()),
        literal(-1, Integer()),
        Claim.pnode,
        cast(func.sum(Claim.mib), BigInteger()),
        literal(0, Integer()),
    )
    .where(Claim.host_id == bindparam("b_host"), live_claim(bindparam("b_now")))
    .group_by(Claim.pnode),
)


def load_domain_state(
    session: Session, host: Host, domain_id: str, now: datetime | None = None
) -> HostState | None:
    """The state of a locked host for a write to one of its domains, in two more statements.

    Only that domain is loaded as ORM rows; every other domain on the host is read as plain rows
    (vnodes, backing, claims in one statement) straight into arrays and kept as per-pnode sums,
    so the cost does not grow with the ORM work for the host's other domains.
    None when the domain is not (or no longer) on this host.
    """
    domain = (
        session.scalars(_DOMAIN_ON_HOST, {"b_domain": domain_id, "b_host": host.id})
        .unique()
        .one_or_none()
    )
    if domain is None or not domain.vnodes:
        return None
    p = len(host.pnodes)
    at = utcnow() if now is None else now
    rows = session.execute(_HOST_ROWS, {"b_host": host.id, "b_now": at}).all()
    kind = np.array([r[0] for r in rows], dtype=np.int64)
    names, dom = np.unique(np.array([str(r[1]) for r in rows]), return_inverse=True)
    num = np.array([r[2:] for r in rows], dtype=np.int64).reshape(-1, 4)
    claimed = np.zeros(p, dtype=np.int64)
    claim = kind == 2
    claimed[num[claim, 1]] = num[claim, 2]
    # One slot per domain id seen; only domains with vnode rows are on the host.
    vn, cell = kind == 0, kind == 1
    n, vmax = len(names), max(int(num[vn, 0].max()) + 1, len(domain.vnodes))
    on_host = np.zeros(n, dtype=bool)
    on_host[dom[vn]] = True
    home = np.zeros((n, vmax), dtype=np.int64)
    actual = np.full((n, vmax), -1, dtype=np.int64)
    vcpus = np.zeros((n, vmax), dtype=np.int64)
    home[dom[vn], num[vn, 0]] = num[vn, 1]
    actual[dom[vn], num[vn, 0]] = num[vn, 2]
    vcpus[dom[vn], num[vn, 0]] = num[vn, 3]  # 0 in slots without a vnode
    cell &= on_host[dom]
    x = np.zeros((n, vmax, p), dtype=np.int64)
    x[dom[cell], num[cell, 0], num[cell, 1]] = num[cell, 2]
    charges = charge_mib(backing_mib=x, actual_mib=actual, home=np.maximum(home, 0))
    t = int(np.searchsorted(names, domain_id))
    rest = np.arange(n) != t
    rest_alloc = charges[rest].sum(axis=(0, 1)).astype(np.int64)
    homed = home[rest] >= 0
    rest_load = np.bincount(home[rest][homed], weights=vcpus[rest][homed], minlength=p).astype(
        np.int64
    )
    k = len(domain.vnodes)
    return HostState(
        host=host,
        domains=[domain],
        backing={domain.id: x[t, :k].copy()},
        claimed_mib=claimed,
        rest_alloc_mib=rest_alloc,
        rest_load_vcpus=rest_load,
    )


def write_backing(session: Session, host_id: str, xs: dict[str, I64]) -> None:
    """Replace the backing rows of some domains of one host (domain id -> (V, P) MiB): two
    statements, however many domains, vnodes and pnodes.

    Plain table statements: Backing rows are never held as ORM objects."""
    if not xs:
        return
    session.execute(_DELETE_BACKING, {"b_domains": list(xs)})
    rows = []
    for domain_id, x in xs.items():
        v_idx, p_idx = np.nonzero(x)
        rows += [
            {"domain_id": domain_id, "vnode": v, "host_id": host_id, "pnode": p, "mib": m}
            for v, p, m in zip(
                v_idx.tolist(), p_idx.tolist(), x[v_idx, p_idx].tolist(), strict=True
            )
        ]
    if rows:
        session.execute(_INSERT_BACKING, rows)


def write_accounting(state: HostState) -> None:
    """Materialize allocated and claimed MiB (the CHECK constraint guards) and the vCPU load
    by home pnode on the pnode rows."""
    allocated = state.allocated_mib()
    for pnode, alloc, claimed, load in zip(
        state.host.pnodes,
        allocated.tolist(),
        state.claimed_mib.tolist(),
        state.load_vcpus().tolist(),
        strict=True,
    ):
        if pnode.allocated_mib != alloc:
            pnode.allocated_mib = alloc
        if pnode.claimed_mib != claimed:
            pnode.claimed_mib = claimed
        if pnode.load_vcpus != load:
            pnode.load_vcpus = load


_BACKING = cast_type(Table, Backing.__table__)
_VNODES = cast_type(Table, Vnode.__table__)
_PNODES = cast_type(Table, Pnode.__table__)
_DOMAINS = cast_type(Table, Domain.__table__)
# Built once: executing a prebuilt statement reuses its memoized cache key and compiled form.
_DELETE_BACKING = delete(_BACKING).where(
    _BACKING.c.domain_id.in_(bindparam("b_domains", expanding=True))
)
_INSERT_BACKING = insert(_BACKING)


def write_vnode_targets(batch: WriteBatch, domain: Domain, targets: list[int]) -> None:
    """Per-vnode targets (one statement in the batch); the loaded rows follow at once."""
    if all(vn.target_mib == targets[vn.index] for vn in domain.vnodes):
        return
    params: dict[str, Any] = {f"t{v}": t for v, t in enumerate(targets)}
    batch.add(_vnode_targets_w(len(targets)), {"domain": domain.id, **params})
    for vn in domain.vnodes:
        set_committed_value(vn, "target_mib", targets[vn.index])


def write_accounting_now(batch: WriteBatch, state: HostState, allocated: I64) -> None:
    """`write_accounting` as one statement in the batch (the CHECK constraint guards the same)."""
    alloc, claimed = allocated.tolist(), state.claimed_mib.tolist()
    pnodes = state.host.pnodes
    if all(
        pn.allocated_mib == alloc[pn.index] and pn.claimed_mib == claimed[pn.index] for pn in pnodes
    ):
        return
    params: dict[str, Any] = {"host": state.host.id}
    params.update({f"a{i}": a for i, a in enumerate(alloc)})
    params.update({f"c{i}": c for i, c in enumerate(claimed)})
    batch.add(_pnode_usage_w(len(pnodes)), params)
    for pn in pnodes:
        set_committed_value(pn, "allocated_mib", alloc[pn.index])
        set_committed_value(pn, "claimed_mib", claimed[pn.index])


def write_backing_cells(
    batch: WriteBatch, session: Session, domain_id: str, host_id: str, x: I64, before: I64
) -> None:
    """`write_backing` knowing the rows as they are (read under the host lock): nothing when
    nothing changed, one UPDATE in the batch when only the MiB of the same cells changed (the
    usual retarget), else the delete and insert, sent now."""
    if before.shape == x.shape and np.array_equal(before, x):
        return
    if before.shape != x.shape or not np.array_equal(before != 0, x != 0):
        write_backing(session, host_id, {domain_id: x})
        return
    v_idx, p_idx = np.nonzero(x)
    params: dict[str, Any] = {"domain": domain_id}
    for i, (v, p, m) in enumerate(
        zip(v_idx.tolist(), p_idx.tolist(), x[v_idx, p_idx].tolist(), strict=True)
    ):
        params.update({f"v{i}": v, f"p{i}": p, f"m{i}": m})
    batch.add(_backing_cells(len(v_idx)), params)


def _domain_target_w(x: str) -> UpdateBase:
    c = _DOMAINS.c
    return (
        update(_DOMAINS)
        .where(c.id == _p(x, "id", String()), c.version == _p(x, "version", Integer()))
        .values(
            target_mib=_p(x, "target", BigInteger()),
            policy=_p(x, "policy", String()),
            target_set_at=_p(x, "set_at", c.target_set_at.type),
            updated_at=_p(x, "updated_at", c.updated_at.type),
            version=_p(x, "next", Integer()),
        )
    )


def write_domain_target(
    batch: WriteBatch, domain: Domain, target_mib: int, policy: str, now: datetime
) -> None:
    """Set the domain's target and policy and bump its version, guarded by the version read
    (add it last: `batch.execute()` then returns 0 when the version changed meanwhile)."""
    updated_at = utcnow()
    batch.add(
        _domain_target_w,
        {
            "id": domain.id,
            "version": domain.version,
            "target": target_mib,
            "policy": policy,
            "set_at": now,
            "updated_at": updated_at,
            "next": domain.version + 1,
        },
    )
    for key, value in (
        ("target_mib", target_mib),
        ("policy", policy),
        ("target_set_at", now),
        ("updated_at", updated_at),
        ("version", domain.version + 1),
    ):
        set_committed_value(domain, key, value)


_DOMAIN_TARGETS = (
    update(_DOMAINS)
    .where(_DOMAINS.c.id == bindparam("b_id"), _DOMAINS.c.version == bindparam("b_version"))
    .values(
        target_mib=bindparam("b_target"),
        target_set_at=bindparam("b_set_at"),
        updated_at=bindparam("b_updated_at"),
        version=bindparam("b_next"),
    )
)


def write_domain_targets(
    session: Session, changes: Sequence[tuple[Domain, int]], now: datetime
) -> None:
    """New targets for some domains of a locked host in one statement (executemany), each
    guarded by the version read like the ORM's own version check; the loaded rows follow."""
    if not changes:
        return
    updated_at = utcnow()
    params = [
        {
            "b_id": d.id,
            "b_version": d.version,
            "b_target": target,
            "b_set_at": now,
            "b_updated_at": updated_at,
            "b_next": d.version + 1,
        }
        for d, target in changes
    ]
    result = session.connection().execute(_DOMAIN_TARGETS, params)
    if result.supports_sane_multi_rowcount() and result.rowcount != len(changes):
        raise StaleDataError("a domain changed while its host was being written")
    for d, target in changes:
        for key, value in (
            ("target_mib", target),
            ("target_set_at", now),
            ("updated_at", updated_at),
            ("version", d.version + 1),
        ):
            set_committed_value(d, key, value)


def domains_of(states: Sequence[HostState]) -> list[Domain]:
    return [d for s in states for d in s.domains]


# -- One retarget's writes as one statement ----------------------------------------------------
#
# A retarget writes six tables. Each write below is a prebuilt statement whose parameters carry a
# per-statement prefix. On PostgreSQL the batch runs as ONE statement (the writes as
# data-modifying CTEs; they touch different rows, so one snapshot is right); elsewhere one
# statement each. Statements are built once per shape (vnodes, pnodes, cells, steps).

Build = Callable[[str], UpdateBase]


def _p(prefix: str, name: str, type_: Any = None) -> BindParameter[Any]:
    return bindparam(prefix + name, type_=type_)


@functools.lru_cache(maxsize=64)
def _backing_cells(n: int) -> Build:
    c = _BACKING.c

    def build(x: str) -> UpdateBase:
        cells = [
            (
                and_(c.vnode == _p(x, f"v{i}", Integer()), c.pnode == _p(x, f"p{i}", Integer())),
                _p(x, f"m{i}", BigInteger()),
            )
            for i in range(n)
        ]
        return (
            update(_BACKING)
            .where(c.domain_id == _p(x, "domain", String()))
            .values(mib=case(*cells, else_=c.mib))
        )

    return build


@functools.lru_cache(maxsize=64)
def _vnode_targets_w(k: int) -> Build:
    c = _VNODES.c

    def build(x: str) -> UpdateBase:
        return (
            update(_VNODES)
            .where(c.domain_id == _p(x, "domain", String()), c.index < k)
            .values(
                target_mib=case(*((c.index == v, _p(x, f"t{v}", BigInteger())) for v in range(k)))
            )
        )

    return build


@functools.lru_cache(maxsize=64)
def _pnode_usage_w(p: int) -> Build:
    c = _PNODES.c

    def build(x: str) -> UpdateBase:
        return (
            update(_PNODES)
            .where(c.host_id == _p(x, "host", String()), c.index < p)
            .values(
                allocated_mib=case(
                    *((c.index == i, _p(x, f"a{i}", BigInteger())) for i in range(p))
                ),
                claimed_mib=case(*((c.index == i, _p(x, f"c{i}", BigInteger())) for i in range(p))),
            )
        )

    return build


@functools.lru_cache(maxsize=64)
def _insert_rows_w(table: Table, columns: tuple[str, ...], n: int) -> Build:
    """INSERT ... SELECT of n rows of typed parameters (a multi-row VALUES would not be
    cacheable: it would be compiled again on every execution)."""

    def build(x: str) -> UpdateBase:
        rows = [
            select(*(_p(x, f"r{i}_{col}", table.c[col].type).label(col) for col in columns))
            for i in range(n)
        ]
        return insert(table).from_select(list(columns), rows[0] if n == 1 else union_all(*rows))

    return build


class WriteBatch:
    """Writes collected in order and sent together by `execute` (see above)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.items: list[tuple[Build, dict[str, Any], Table | None, Sequence[dict[str, Any]]]] = []

    def add(self, build: Build, params: dict[str, Any]) -> None:
        self.items.append((build, params, None, ()))

    def add_rows(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        """Rows for one table, all with the same keys."""
        if rows:
            columns = tuple(rows[0])
            params = {f"r{i}_{c}": row[c] for i, row in enumerate(rows) for c in columns}
            self.items.append((_insert_rows_w(table, columns, len(rows)), params, table, rows))

    def execute(self) -> int:
        """Send the writes; returns the row count of the last one."""
        if not self.items:
            return 0
        conn = self.session.connection()
        if conn.dialect.name == "postgresql":
            stmt = _combined(tuple(item[0] for item in self.items))
            params = {
                f"w{i}_{k}": v for i, (_, p, _t, _r) in enumerate(self.items) for k, v in p.items()
            }
            return int(conn.execute(stmt, params).rowcount)
        rowcount = 0
        for build, p, table, rows in self.items:
            if table is not None:
                rowcount = int(conn.execute(_insert(table), list(rows)).rowcount)
            else:
                params = {f"w_{k}": v for k, v in p.items()}
                rowcount = int(conn.execute(_alone(build), params).rowcount)
        return rowcount


@functools.lru_cache(maxsize=16)
def _insert(table: Table) -> UpdateBase:
    return insert(table)


@functools.lru_cache(maxsize=256)
def _alone(build: Build) -> UpdateBase:
    return build("w_")


@functools.lru_cache(maxsize=256)
def _combined(builds: tuple[Build, ...]) -> UpdateBase:
    *first, last = (b(f"w{i}_") for i, b in enumerate(builds))
    stmt = last
    for i, s in enumerate(first):
        stmt = stmt.add_cte(s.cte(f"w{i}"))
    return stmt
