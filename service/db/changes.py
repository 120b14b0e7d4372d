"""What a write operation decides, as data: the change set that `apply` writes.

Every write to a host's memory (create, retarget, squeeze, rebalance, a guest's or an agent's
report, a migration's phase change) is computed by a pure function of the loaded accounting, the
request and the time, and comes back as a `ChangeSet`. `absorb` brings the loaded rows up to date
in memory; `service.db.apply.apply` writes the same change set and is the only writer of the
per-pnode counters. Keeping the decision apart from the writing is what lets `tests/core/` run the
rules on a fake clock without a database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm.attributes import set_committed_value

from service.db.accounting import I64, HostAccounting
from service.db.base import Base, new_id
from service.db.models import Domain, Host

Row = dict[str, Any]


@dataclass(kw_only=True)
class NewTarget:
    """The toolstack's new target for a domain: spec, so the domain's version moves."""

    domain: Domain
    target_mib: int
    policy: str | None = None  # None: unchanged
    set_at: datetime


@dataclass(kw_only=True)
class ChangeSet:
    """Changes to the rows of one host's domains, and the events that record them."""

    backing: dict[str, I64] = field(default_factory=dict)  # domain id -> new (V, P) MiB
    targets: list[NewTarget] = field(default_factory=list)
    # domain id -> the pool-change steps that replace its pending ones (an empty list cancels)
    pool_steps: dict[str, list[Row]] = field(default_factory=dict)
    new_steps: list[Row] = field(default_factory=list)  # steps queued beside the pending ones
    # domain id -> vnode -> reported MiB (None: not reported, as after a move)
    actual_mib: dict[str, dict[int, int | None]] = field(default_factory=dict)
    # domain id -> per-vnode pool targets that do not follow its backing (a migration's levels)
    pool_targets: dict[str, list[int]] = field(default_factory=dict)
    status: list[tuple[Domain | Host, Row]] = field(default_factory=list)  # version unchanged
    # Claims on this host's pnodes: rows to add (`claim_row`), and migrations whose claims are
    # released (deleted) or held (no longer leased by the clock); `apply` re-reads the live sum.
    claims: list[Row] = field(default_factory=list)
    released_claims: list[str] = field(default_factory=list)  # migration ids
    held_claims: list[str] = field(default_factory=list)  # migration ids
    # pnode index -> the free MiB its agent observed (status: pnodes carry no version)
    observed_free_mib: dict[int, int] = field(default_factory=dict)
    events: list[Row] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(
            (
                self.backing,
                self.targets,
                self.pool_steps,
                self.new_steps,
                self.actual_mib,
                self.pool_targets,
                self.status,
                self.claims,
                self.released_claims,
                self.held_claims,
                self.observed_free_mib,
                self.events,
            )
        )

    def merge(self, other: ChangeSet) -> ChangeSet:
        """Both change sets as one, `other` after `self` (neither is changed)."""
        out = ChangeSet()
        out.extend(self)
        out.extend(other)
        return out

    def extend(self, other: ChangeSet) -> None:
        """Add `other`'s changes after these, in place (a report folds one set per domain)."""
        self.backing.update(other.backing)
        self.targets += other.targets
        self.pool_steps.update(other.pool_steps)
        self.new_steps += other.new_steps
        self.actual_mib.update(other.actual_mib)
        self.pool_targets.update(other.pool_targets)
        self.status += other.status
        self.claims += other.claims
        self.released_claims += other.released_claims
        self.held_claims += other.held_claims
        self.observed_free_mib.update(other.observed_free_mib)
        self.events += other.events

    def claims_change(self) -> bool:
        """Whether the host's live claims move (then `apply` reads their sum again)."""
        return bool(self.claims or self.released_claims)


def event(
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str | None,
    *,
    at: datetime,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> Row:
    """An audit event row: the one shape every writer of events uses, stamped `at` the
    request's clock (the decision's `now`, never the wall clock read here)."""
    return {
        "at": at,
        "actor": actor,
        "action": action,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "before": before,
        "after": after,
    }


def claim_row(
    *,
    host_id: str,
    pnode: int,
    mib: int,
    domain_id: str | None,
    migration_id: str | None,
    expires_at: datetime | None,
    created_at: datetime,
) -> Row:
    """A claim's row, every column present: memory reserved on one pnode."""
    return {
        "id": new_id(),
        "host_id": host_id,
        "pnode": pnode,
        "mib": mib,
        "domain_id": domain_id,
        "migration_id": migration_id,
        "expires_at": expires_at,
        "created_at": created_at,
    }


def step_row(
    *,
    domain_id: str,
    host_id: str,
    seq: int,
    phase: str,
    op: str,
    vnode: int | None,
    pnode: int | None,
    mib: int,
    pfn_ranges: list[list[int]],
    created_at: datetime,
    target_mib: int | None = None,
    grow: bool | None = None,
    migration_id: str | None = None,
    state: str = "pending",
    detail: str | None = None,
    acked_at: datetime | None = None,
) -> Row:
    """A step's row, every column present (rows of one INSERT share their keys); the one
    builder of steps, whether inserted in a batch or as ORM rows of a migration."""
    return {
        "id": new_id(),
        "migration_id": migration_id,
        "domain_id": domain_id,
        "host_id": host_id,
        "seq": seq,
        "phase": phase,
        "op": op,
        "vnode": vnode,
        "pnode": pnode,
        "mib": mib,
        "pfn_ranges": pfn_ranges,
        "target_mib": target_mib,
        "grow": grow,
        "state": state,
        "detail": detail,
        "created_at": created_at,
        "acked_at": acked_at,
    }


def absorb(accounting: HostAccounting, changes: ChangeSet, *, updated_at: datetime) -> None:
    """Bring the loaded rows and arrays up to date with `changes`, as already-committed values:
    the ORM's unit of work must not write them a second time, `apply` writes them."""
    accounting.absorbed(changes.backing, changes.actual_mib)
    for domain_id, backing in changes.backing.items():
        accounting.backing[domain_id] = backing
        domain = accounting.domain(domain_id)
        if domain is not None:
            targets = backing.sum(axis=1).tolist()
            for vn in domain.vnodes:
                committed(vn, "target_mib", int(targets[vn.index]))
    for domain_id, levels in changes.pool_targets.items():
        domain = accounting.domain(domain_id)
        for vn in domain.vnodes if domain is not None else []:
            committed(vn, "target_mib", levels[vn.index])
    for domain_id, reported in changes.actual_mib.items():
        domain = accounting.domain(domain_id)
        for vn in domain.vnodes if domain is not None else []:
            if vn.index in reported:
                committed(vn, "actual_mib", reported[vn.index])
    for t in changes.targets:
        values: Row = {"target_mib": t.target_mib, "target_set_at": t.set_at}
        values["updated_at"] = updated_at
        if t.policy is not None:
            values["policy"] = t.policy
        values["version"] = t.domain.version + 1
        for name, value in values.items():
            committed(t.domain, name, value)
    for row, values in changes.status:
        for name, value in values.items():
            committed(row, name, value)


def committed(row: object, name: str, value: Any) -> None:
    """A mapped row's attribute set as already committed; a plain row's (`db/report_rows.py`,
    `db/plain_rows.py`) simply set: nothing would write it again."""
    if isinstance(row, Base):
        set_committed_value(row, name, value)
    else:
        setattr(row, name, value)
