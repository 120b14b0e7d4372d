"""The host agent's batch report: free memory per pnode and every domain's per-vnode actual size
as the hypervisor sees it, in one request per host per interval.

Status only (spec/status split): the report writes observed sizes, progress timestamps, the
uncooperative flag, drift and the materialized accounting, never a toolstack-owned field, so no
domain's or host's ``version`` (ETag) moves: they go through `apply` as the change set's status.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from service.core.balloon import complete_pool_steps, observe, stalled
from service.db.accounting import HostAccounting
from service.db.apply import apply
from service.db.changes import ChangeSet, event
from service.db.loaders import load_host_accounting
from service.errors import InvalidInput, NotFound
from service.schemas.agent import AgentReportIn, AgentReportOut, DriftPnode
from service.settings import Settings


def pnode_errors(state: HostAccounting, indexes: Sequence[int]) -> list[dict[str, Any]]:
    """Located errors for reported pnode indexes the host does not have."""
    n = state.n_pnodes
    return [
        {"loc": ["body", "pnodes", i, "index"], "msg": f"the host has pnodes 0..{n - 1}"}
        for i, index in enumerate(indexes)
        if index >= n
    ]


def _validate(state: HostAccounting, body: AgentReportIn) -> None:
    errors = pnode_errors(state, [p.index for p in body.pnodes])
    seen_domains: set[str] = set()
    for i, d in enumerate(body.domains):
        if d.domain_id in seen_domains:
            errors.append({"loc": ["body", "domains", i, "domain_id"], "msg": "reported twice"})
        seen_domains.add(d.domain_id)
        domain = state.domain(d.domain_id)
        if domain is None:
            continue
        k = len(domain.vnodes)
        seen: set[int] = set()
        for j, vn in enumerate(d.vnodes):
            loc = ["body", "domains", i, "vnodes", j, "index"]
            if vn.index >= k:
                errors.append({"loc": loc, "msg": f"the domain has vnodes 0..{k - 1}"})
            elif vn.index in seen:
                errors.append({"loc": loc, "msg": "reported twice"})
            seen.add(vn.index)
    if errors:
        raise InvalidInput(
            "the report names pnodes or vnodes this host does not have", errors=errors
        )


def drift(
    state: HostAccounting, now: datetime, settings: Settings, actor: str
) -> tuple[bool, list[DriftPnode], ChangeSet]:
    """Each pnode's observed free memory against the accounting's; the host is flagged when one
    differs by more than ``drift_threshold_mib`` (pure)."""
    accounted = (state.capacity_mib - state.claimed_mib - state.allocated_mib()).tolist()
    rows = [
        DriftPnode(
            index=p.index,
            accounted_free_mib=int(accounted[p.index]),
            observed_free_mib=p.observed_free_mib,
            drift_mib=None
            if p.observed_free_mib is None
            else p.observed_free_mib - int(accounted[p.index]),
        )
        for p in state.host.pnodes
    ]
    flagged = any(
        r.drift_mib is not None and abs(r.drift_mib) > settings.drift_threshold_mib for r in rows
    )
    host = state.host
    values: dict[str, Any] = {"observed_at": now}
    changes = ChangeSet(status=[(host, values)])
    if flagged != host.drift_flagged:
        values["drift_flagged"] = flagged
        changes.events.append(
            event(
                actor,
                "host.drift_flagged" if flagged else "host.drift_cleared",
                "host",
                host.id,
                before={"drift_flagged": not flagged},
                after={"drift_mib": {str(r.index): r.drift_mib for r in rows}},
            )
        )
    return flagged, rows, changes


def agent_report(
    session: Session,
    host_id: str,
    body: AgentReportIn,
    now: datetime,
    settings: Settings,
    actor: str,
) -> tuple[AgentReportOut, set[str]]:
    """Record one batch report under the host's lock; unknown domains are listed, not errors
    (a domain that just migrated away may still be reported once). Also returns the migrations
    whose pool steps the report completed (to drive on after the commit)."""
    state = load_host_accounting(session, host_id, lock=True, now=now, lean=True)
    if state is None:
        raise NotFound(f"no host with id {host_id}")
    _validate(state, body)
    for p in body.pnodes:
        state.host.pnodes[p.index].observed_free_mib = p.free_mib  # Pnode: no version
    unknown: list[str] = []
    observed = ChangeSet()
    reports: dict[str, dict[int, int]] = {}
    for d in body.domains:
        domain = state.domain(d.domain_id)
        if domain is None:
            unknown.append(d.domain_id)
            continue
        reports[domain.id] = {v.index: v.actual_mib for v in d.vnodes}
        changes, _ = observe(
            domain, reports[domain.id], now, actor=actor, action="domain.actual_observed"
        )
        observed.extend(changes)
    apply(session, state, observed)
    moved_on = complete_pool_steps(session, reports, now, by="host agent")
    # After the reports: a driver that just made progress is not stalled.
    flagged, rows, drifted = drift(state, now, settings, actor)
    apply(session, state, stalled(state.domains, now, settings, actor=actor).merge(drifted))
    out = AgentReportOut(
        host_id=host_id,
        domains_accepted=len(reports),
        unknown_domains=unknown,
        drift_flagged=flagged,
        drift=rows,
    )
    return out, moved_on
