"""The one write path: `apply` writes a change set and the per-pnode counters it implies.

Every operation that changes a host's memory ends here. `apply` writes the change set in a fixed
number of statements (one on PostgreSQL for a retarget: docs/adr/0003-cte-write-batches.md),
brings the loaded rows up to date, then recomputes the pnode counters from the accounting it now
holds and refuses an overcommit before writing them. It is the only writer of `allocated_mib`,
`claimed_mib` and `load_vcpus`, of the claim rows behind `claimed_mib`, and of the agents'
`observed_free_mib`: two writers kept in step by hand is how counters drifted under concurrent
squeezes. `tests/test_write_path.py` fails when any other module of `service/` assigns them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Set
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    String,
    and_,
    bindparam,
    case,
    cast,
    column,
    delete,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import UpdateBase

from service.db.accounting import I64, HostAccounting, live_claim
from service.db.base import Base
from service.db.batch import Build, WriteBatch, alone, param
from service.db.changes import ChangeSet, NewTarget, Row, absorb, committed
from service.db.models import Claim, Domain, Host
from service.db.raw import PlainTransaction
from service.db.status import status_update
from service.db.tables import BACKING, CLAIMS, DOMAINS, EVENTS, HOSTS, PNODES, STEPS, VNODES
from service.errors import Conflict


def apply(
    session: Session, accounting: HostAccounting, changes: ChangeSet, *, now: datetime
) -> None:
    """Write `changes` to a locked host and recompute its counters in the same transaction;
    `now` is the request's clock (what `updated_at` says, which claims are live).

    Raises `Infeasible` (nothing written that the caller's rollback would not undo) when the
    result would overcommit a pnode, and `Conflict` when a domain's version moved meanwhile.
    """
    session.flush()  # rows the operation added through the ORM (a new domain) come first
    _write_claims(session, accounting, changes, now)
    conn = session.connection()
    batch = _writes(accounting, changes, now, conn.dialect.name)
    _found_target(batch.execute(conn), changes)


async def apply_plain(
    tx: PlainTransaction, accounting: HostAccounting, changes: ChangeSet, *, now: datetime
) -> None:
    """`apply` in a transaction on a plain connection (PostgreSQL, on the event loop: a target
    write, `core/target_on_loop.py`): the same statements, sent there. A change set that moves
    claims is refused: their live sums are read back between the writes, through the session."""
    if changes.claims_change():
        raise ValueError("a change set that moves claims is applied through a session")
    batch = _writes(accounting, changes, now, "postgresql")
    _found_target(await batch.execute_plain(tx), changes)


def _writes(
    accounting: HostAccounting, changes: ChangeSet, now: datetime, dialect: str
) -> WriteBatch:
    """Every write of `changes` but the claims', in the order they are sent, with the counters
    they imply; the loaded rows and arrays brought up to date (`absorb`)."""
    batch = WriteBatch(dialect)
    _write_observed(batch, accounting, changes.observed_free_mib)
    if changes.backing.keys() & changes.pool_targets.keys():
        raise ValueError("a domain's pool levels follow its new backing or are given, not both")
    _write_backing(batch, accounting, changes.backing)
    for domain_id, levels in changes.pool_targets.items():
        _write_vnode_targets(batch, accounting, domain_id, levels)
    # A batch's statements share one snapshot: two UPDATEs of the same vnode rows in it would
    # keep one. Actual sizes of a domain whose targets move go in a statement of their own.
    targeted = changes.backing.keys() | changes.pool_targets.keys()
    _write_actual(batch, changes.actual_mib, targeted)
    _write_pool_steps(batch, changes.pool_steps)
    batch.add_rows(STEPS, changes.new_steps)
    _write_status(batch, changes.status)
    batch.add_rows(EVENTS, changes.events)
    updated_at = now
    guards = [_target_params(t, updated_at) for t in changes.targets]
    absorb(accounting, changes, updated_at=updated_at)
    _write_counters(batch, accounting)
    if len(guards) > 1:
        many = [{f"b_{k}": v for k, v in g.items()} for g in guards]
        batch.send(_DOMAIN_TARGET, many, expect=len(guards))
    if len(guards) == 1:
        batch.add(_domain_target_w, guards[0])  # last: the batch returns its row count
    return batch


def _found_target(rowcount: int, changes: ChangeSet) -> None:
    """One domain's new target: its guarded UPDATE, the batch's last, found its row."""
    if len(changes.targets) == 1 and rowcount != 1:
        raise Conflict("the domain changed while this request ran; retry")


def write_observed_free(session: Session, host_id: str, free_mib: Mapping[int, int]) -> None:
    """Each reported pnode's observed free MiB (status: pnodes carry no version), for a report
    that changes nothing else (`agent_report`'s settled path: no accounting loaded)."""
    if free_mib:
        session.connection().execute(_OBSERVED_FREE, _observed_rows(host_id, free_mib))


async def write_observed_free_plain(
    tx: PlainTransaction, host_id: str, free_mib: Mapping[int, int]
) -> None:
    """`write_observed_free` in a transaction on a plain connection (a settled report's, on
    the event loop: `core/agent_report.settled_on_loop`)."""
    if free_mib:
        await tx.execute_many(_OBSERVED_FREE, _observed_rows(host_id, free_mib))


def _observed_rows(host_id: str, free_mib: Mapping[int, int]) -> list[dict[str, Any]]:
    return [{"b_host": host_id, "b_i": i, "b_free": f} for i, f in free_mib.items()]


def _write_observed(batch: WriteBatch, accounting: HostAccounting, free: dict[int, int]) -> None:
    """The observations that differ from what the pnodes hold, written and set in memory."""
    pnodes = accounting.host.pnodes
    changed = {i: f for i, f in free.items() if pnodes[i].observed_free_mib != f}
    if changed:
        batch.send(_OBSERVED_FREE, _observed_rows(accounting.host.id, changed))
    for index, free_mib in changed.items():
        committed(pnodes[index], "observed_free_mib", free_mib)


def _write_claims(
    session: Session, accounting: HostAccounting, changes: ChangeSet, now: datetime
) -> None:
    """Release, hold and add the host's claims, then read their live sum per pnode again: the
    `claimed_mib` the counters are written from."""
    host_id = accounting.host.id
    if changes.released_claims:
        session.execute(_RELEASE_CLAIMS, {"b_host": host_id, "b_ids": changes.released_claims})
    if changes.held_claims:
        session.execute(_HOLD_CLAIMS, {"b_host": host_id, "b_ids": changes.held_claims})
    if changes.claims:
        if any(row["host_id"] != host_id for row in changes.claims):
            raise ValueError("a change set claims memory of its own host only")
        session.execute(insert(CLAIMS), changes.claims)
    if changes.claims_change():
        claimed = np.zeros(accounting.n_pnodes, dtype=np.int64)
        for pnode, mib in session.execute(_LIVE_CLAIMS, {"b_host": host_id, "b_now": now}):
            claimed[pnode] = mib
        accounting.claimed_mib = claimed


def _write_counters(batch: WriteBatch, accounting: HostAccounting) -> None:
    allocated = accounting.check_fits().tolist()
    claimed = accounting.claimed_mib.tolist()
    load = accounting.load_vcpus().tolist()
    pnodes = accounting.host.pnodes
    if all(
        (pn.allocated_mib, pn.claimed_mib, pn.load_vcpus)
        == (allocated[pn.index], claimed[pn.index], load[pn.index])
        for pn in pnodes
    ):
        return
    params: dict[str, Any] = {"host": accounting.host.id}
    for name, values in (("a", allocated), ("c", claimed), ("l", load)):
        params.update({f"{name}{i}": v for i, v in enumerate(values)})
    batch.add(_pnode_counters_w(len(pnodes)), params)
    for pn in pnodes:
        committed(pn, "allocated_mib", allocated[pn.index])
        committed(pn, "claimed_mib", claimed[pn.index])
        committed(pn, "load_vcpus", load[pn.index])


def _write_backing(batch: WriteBatch, accounting: HostAccounting, new: dict[str, I64]) -> None:
    """One domain whose cells keep their places (the usual retarget): one UPDATE in the batch;
    otherwise the rows are replaced (DELETE and INSERT, sent now: a batch's CTEs share one
    snapshot, so an INSERT there would collide with the rows its sibling deletes)."""
    if len(new) == 1:
        ((domain_id, backing),) = new.items()
        before = accounting.backing.get(domain_id)
        if before is not None and before.shape == backing.shape:
            if np.array_equal(before, backing):
                pass
            elif np.array_equal(before != 0, backing != 0):
                batch.add(*_cells_update(domain_id, backing))
            else:
                _replace_backing(batch, accounting.host.id, new)
            _write_vnode_targets(batch, accounting, domain_id, backing)
            return
    if not new:
        return
    _replace_backing(batch, accounting.host.id, new)
    targets = [
        {"b_domain": domain_id, "b_index": v, "b_target": int(t)}
        for domain_id, backing in new.items()
        for v, t in enumerate(backing.sum(axis=1).tolist())
    ]
    batch.send(_VNODE_TARGET, targets)  # one executemany, however many domains


def _cells_update(domain_id: str, backing: I64) -> tuple[Build, dict[str, Any]]:
    v_idx, p_idx = np.nonzero(backing)
    params: dict[str, Any] = {"domain": domain_id}
    cells = zip(v_idx.tolist(), p_idx.tolist(), backing[v_idx, p_idx].tolist(), strict=True)
    for i, (v, p, m) in enumerate(cells):
        params.update({f"v{i}": v, f"p{i}": p, f"m{i}": m})
    return _backing_cells_w(len(v_idx)), params


def _replace_backing(batch: WriteBatch, host_id: str, new: dict[str, I64]) -> None:
    """Replace the backing rows of some domains of one host: two statements, however many."""
    batch.send(_DELETE_BACKING, {"b_domains": list(new)})
    rows = []
    for domain_id, backing in new.items():
        v_idx, p_idx = np.nonzero(backing)
        cells = zip(v_idx.tolist(), p_idx.tolist(), backing[v_idx, p_idx].tolist(), strict=True)
        rows += [
            {"domain_id": domain_id, "vnode": v, "host_id": host_id, "pnode": p, "mib": m}
            for v, p, m in cells
        ]
    if rows:
        batch.send(_INSERT_BACKING, rows)


def _write_vnode_targets(
    batch: WriteBatch, accounting: HostAccounting, domain_id: str, levels: I64 | list[int]
) -> None:
    """Per-vnode targets: the backing rows' sums (a (V, P) matrix) or explicit levels (a list);
    written only when one of them moves."""
    targets = [int(t) for t in (levels.sum(axis=1) if isinstance(levels, np.ndarray) else levels)]
    domain = accounting.domain(domain_id)
    if domain is not None and all(vn.target_mib == targets[vn.index] for vn in domain.vnodes):
        return
    params: dict[str, Any] = {f"t{v}": t for v, t in enumerate(targets)}
    batch.add(_vnode_targets_w(len(targets)), {"domain": domain_id, **params})


def _write_actual(
    batch: WriteBatch, actual: dict[str, dict[int, int | None]], targeted: Set[str]
) -> None:
    """One domain (a guest's report, a move): in the batch. Several (an agent's batch report):
    one executemany of one fixed statement, so that 10,000 hosts of different shapes do not
    each compile a statement of their own."""
    actual = {domain_id: reported for domain_id, reported in actual.items() if reported}
    if len(actual) > 1 and batch.dialect == "postgresql":
        _write_actual_arrays(batch, actual, targeted)
        return
    if len(actual) > 1:
        rows = [
            {"b_domain": domain_id, "b_index": v, "b_mib": mib}
            for domain_id, reported in actual.items()
            for v, mib in reported.items()
        ]
        batch.send(_VNODE_ACTUAL, rows)
        return
    for domain_id, reported in actual.items():
        params: dict[str, Any] = {"domain": domain_id}
        for i, (v, mib) in enumerate(sorted(reported.items())):
            params.update({f"v{i}": v, f"m{i}": mib})
        build = _vnode_actual_w(len(reported))
        if domain_id in targeted:
            batch.send(alone(build), {f"w_{k}": v for k, v in params.items()})
        else:
            batch.add(build, params)


def _write_actual_arrays(
    batch: WriteBatch, actual: dict[str, dict[int, int | None]], targeted: Set[str]
) -> None:
    """Several domains' actual sizes on PostgreSQL: one UPDATE joined to the (domain, vnode,
    MiB) rows of one JSON parameter, in the batch (an executemany of one row each cost a batch
    report more than the rest of its writes; arrays cost psycopg a Python loop per element to
    send). On its own when one of the domains' targets moves in this batch (one snapshot: the
    batch would keep one of the two UPDATEs)."""
    rows = [
        {"d": domain_id, "v": v, "m": mib}
        for domain_id, reported in actual.items()
        for v, mib in reported.items()
    ]
    params: dict[str, Any] = {"rows": json.dumps(rows)}
    if targeted.isdisjoint(actual):
        batch.add(_vnode_actuals_w, params)
    else:
        batch.send(alone(_vnode_actuals_w), {f"w_{k}": v for k, v in params.items()})


def _write_pool_steps(batch: WriteBatch, steps: dict[str, list[Row]]) -> None:
    """Cancel the domains' pending pool steps and queue the new ones: in the batch for one
    domain (a retarget), two statements for many (a squeeze)."""
    rows = [row for domain_rows in steps.values() for row in domain_rows]
    if len(steps) == 1:
        batch.add(_cancel_pool_steps_w, {"domain": next(iter(steps))})
        batch.add_rows(STEPS, rows)
    elif steps:
        batch.send(_CANCEL_MANY, {"b_domains": list(steps)})
        if rows:
            batch.send(_INSERT_STEPS, rows)


def _write_status(batch: WriteBatch, status: list[tuple[Domain | Host, Row]]) -> None:
    """One UPDATE per distinct (model, values): a batch report's progress marks are one.
    A row named twice ends with its later values, as `absorb` leaves it in memory."""
    latest: dict[tuple[type[Domain] | type[Host], str], Row] = {}
    for row, values in status:
        key = (_model(row), row.id)
        latest[key] = {**latest[key], **values} if key in latest else dict(values)
    groups: dict[tuple[type[Domain] | type[Host], tuple[tuple[str, Any], ...]], list[str]] = {}
    for (model, row_id), values in latest.items():
        groups.setdefault((model, tuple(sorted(values.items()))), []).append(row_id)
    for (model, items), ids in groups.items():
        params = {f"b_{name}": value for name, value in items}
        batch.send(_status_w(model, tuple(name for name, _ in items)), {"b_ids": ids, **params})


def _model(row: Domain | Host) -> type[Domain] | type[Host]:
    """A row's model; a plain domain row (`db/report_rows.py`) is a Domain's."""
    return type(row) if isinstance(row, Base) else Domain


@functools.lru_cache(maxsize=32)
def _status_w(model: type[Domain] | type[Host], names: tuple[str, ...]) -> UpdateBase:
    """`status_update` of the rows whose ids are `b_ids`, its values parameters `b_<name>`:
    built once per model and columns (building it on every report cost more than running it).
    `status_update` refuses any column that is not status."""
    status_update([model()], dict.fromkeys(names))
    table = HOSTS if model is Host else DOMAINS
    return (
        update(table)
        .where(table.c.id.in_(bindparam("b_ids", expanding=True)))
        .values({name: bindparam(f"b_{name}", type_=table.c[name].type) for name in names})
    )


def _target_params(t: NewTarget, updated_at: Any) -> dict[str, Any]:
    return {
        "id": t.domain.id,
        "version": t.domain.version,
        "target": t.target_mib,
        "policy": t.policy or t.domain.policy,
        "set_at": t.set_at,
        "updated_at": updated_at,
        "next": t.domain.version + 1,
    }


# -- Statements, built once per shape ----------------------------------------------------------


def _domain_target_w(x: str) -> UpdateBase:
    """Target, policy and version, guarded by the version read (0 rows when it moved)."""
    c = DOMAINS.c
    return (
        update(DOMAINS)
        .where(c.id == param(x, "id", String()), c.version == param(x, "version", Integer()))
        .values(
            target_mib=param(x, "target", BigInteger()),
            policy=param(x, "policy", String()),
            target_set_at=param(x, "set_at", c.target_set_at.type),
            updated_at=param(x, "updated_at", c.updated_at.type),
            version=param(x, "next", Integer()),
        )
    )


_DOMAIN_TARGET = _domain_target_w("b_")  # executemany: parameters named b_<name>


@functools.lru_cache(maxsize=64)
def _backing_cells_w(n: int) -> Build:
    c = BACKING.c

    def build(x: str) -> UpdateBase:
        cells = [
            (
                and_(
                    c.vnode == param(x, f"v{i}", Integer()), c.pnode == param(x, f"p{i}", Integer())
                ),
                param(x, f"m{i}", BigInteger()),
            )
            for i in range(n)
        ]
        return (
            update(BACKING)
            .where(c.domain_id == param(x, "domain", String()))
            .values(mib=case(*cells, else_=c.mib))
        )

    return build


@functools.lru_cache(maxsize=64)
def _vnode_targets_w(k: int) -> Build:
    c = VNODES.c

    def build(x: str) -> UpdateBase:
        targets = ((c.index == v, param(x, f"t{v}", BigInteger())) for v in range(k))
        return (
            update(VNODES)
            .where(c.domain_id == param(x, "domain", String()), c.index < k)
            .values(target_mib=case(*targets))
        )

    return build


@functools.lru_cache(maxsize=64)
def _vnode_actual_w(n: int) -> Build:
    c = VNODES.c

    def build(x: str) -> UpdateBase:
        cells = [
            (c.index == param(x, f"v{i}", Integer()), param(x, f"m{i}", BigInteger()))
            for i in range(n)
        ]
        return (
            update(VNODES)
            .where(c.domain_id == param(x, "domain", String()))
            .values(actual_mib=case(*cells, else_=c.actual_mib))
        )

    return build


@functools.lru_cache(maxsize=64)
def _pnode_counters_w(p: int) -> Build:
    c = PNODES.c

    def per_pnode(x: str, name: str, type_: Any) -> Any:
        return case(*((c.index == i, param(x, f"{name}{i}", type_)) for i in range(p)))

    def build(x: str) -> UpdateBase:
        return (
            update(PNODES)
            .where(c.host_id == param(x, "host", String()), c.index < p)
            .values(
                allocated_mib=per_pnode(x, "a", BigInteger()),
                claimed_mib=per_pnode(x, "c", BigInteger()),
                load_vcpus=per_pnode(x, "l", Integer()),
            )
        )

    return build


def _vnode_actuals_w(x: str) -> UpdateBase:
    """Actual sizes of vnodes of several domains from a JSON list of {d, v, m} (PostgreSQL)."""
    c = VNODES.c
    reported = func.jsonb_to_recordset(cast(param(x, "rows", String()), JSONB)).table_valued(
        column("d", String()), column("v", Integer()), column("m", BigInteger())
    )
    rows = reported.render_derived(name="reported", with_types=True)
    return (
        update(VNODES)
        .where(c.domain_id == rows.c.d, c.index == rows.c.v)
        .values(actual_mib=rows.c.m)
    )


# In the SQL text, not a parameter: the partial index of pending steps (ix_steps_domain_id_pending)
# serves only a query whose plan knows the state is 'pending', and a prepared statement's generic
# plan would not.
_PENDING: ColumnElement[str] = literal_column("'pending'", String())


def _cancel_pool_steps_w(x: str) -> UpdateBase:
    """The domain's pending steps outside migrations, cancelled."""
    c = STEPS.c
    return (
        update(STEPS)
        .where(c.domain_id == param(x, "domain", String()))
        .where(c.state == _PENDING, c.migration_id.is_(None))
        .values(state="cancelled", detail="superseded by a newer target")
    )


_CANCEL_MANY = (
    update(STEPS)
    .where(STEPS.c.domain_id.in_(bindparam("b_domains", expanding=True)))
    .where(STEPS.c.state == _PENDING, STEPS.c.migration_id.is_(None))
    .values(state="cancelled", detail="superseded by a newer target")
)
_INSERT_STEPS = insert(STEPS)
_VNODE_ACTUAL = (
    update(VNODES)
    .where(VNODES.c.domain_id == bindparam("b_domain"), VNODES.c.index == bindparam("b_index"))
    .values(actual_mib=bindparam("b_mib"))
)
_VNODE_TARGET = (
    update(VNODES)
    .where(VNODES.c.domain_id == bindparam("b_domain"), VNODES.c.index == bindparam("b_index"))
    .values(target_mib=bindparam("b_target"))
)
_DELETE_BACKING = delete(BACKING).where(
    BACKING.c.domain_id.in_(bindparam("b_domains", expanding=True))
)
_INSERT_BACKING = insert(BACKING)
_OBSERVED_FREE = (
    update(PNODES)
    .where(and_(PNODES.c.host_id == bindparam("b_host"), PNODES.c.index == bindparam("b_i")))
    .values(observed_free_mib=bindparam("b_free"))
)
_RELEASE_CLAIMS = delete(CLAIMS).where(
    CLAIMS.c.host_id == bindparam("b_host"),
    CLAIMS.c.migration_id.in_(bindparam("b_ids", expanding=True)),
)
_HOLD_CLAIMS = (
    update(CLAIMS)
    .where(
        CLAIMS.c.host_id == bindparam("b_host"),
        CLAIMS.c.migration_id.in_(bindparam("b_ids", expanding=True)),
    )
    .values(expires_at=None)
)
_LIVE_CLAIMS = (
    select(Claim.pnode, cast(func.sum(Claim.mib), BigInteger()))
    .where(Claim.host_id == bindparam("b_host"), live_claim(bindparam("b_now")))
    .group_by(Claim.pnode)
)
