"""The host agent's batch report: free memory per pnode and every domain's per-vnode actual size
as the hypervisor sees it, in one request per host per interval.

Status only (spec/status split): the report writes observed sizes, progress timestamps, the
uncooperative flag, drift and the materialized accounting, never a toolstack-owned field, so no
domain's or host's ``version`` (ETag) moves. Status columns of the versioned rows are written with
plain table statements, which SQLAlchemy's ``version_id_col`` does not see; the in-memory rows are
kept in step with ``set_committed_value`` so a later flush does not write them again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from service.core.balloon import actual_total, complete_pool_steps, sweep
from service.db.audit import record_event
from service.db.models import Domain
from service.db.state import HostState, load_host_state, write_accounting
from service.db.status import write_status
from service.errors import InvalidInput, NotFound
from service.schemas.agent import AgentReportIn, AgentReportOut, DriftPnode
from service.settings import Settings


def _validate(state: HostState, body: AgentReportIn) -> None:
    n = state.n_pnodes
    errors: list[dict[str, Any]] = [
        {"loc": ["body", "pnodes", i, "index"], "msg": f"the host has pnodes 0..{n - 1}"}
        for i, p in enumerate(body.pnodes)
        if p.index >= n
    ]
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


def _observe_domain(
    session: Session, domain: Domain, reported: dict[int, int], now: datetime, actor: str
) -> None:
    """The guest report's rules (a report lowers a vnode's charge, never raises it above its
    target), applied to the hypervisor's view."""
    before_total = actual_total(domain)
    gap_before = None if before_total is None else abs(before_total - domain.target_mib)
    before = {vn.index: vn.actual_mib for vn in domain.vnodes}
    for vn in domain.vnodes:
        if vn.index in reported:
            ceiling = max(
                vn.target_mib, vn.actual_mib if vn.actual_mib is not None else vn.target_mib
            )
            vn.actual_mib = min(reported[vn.index], ceiling, vn.size_mib)  # Vnode: no version
    after_total = actual_total(domain)
    gap_after = None if after_total is None else abs(after_total - domain.target_mib)
    progress = gap_after is not None and (
        gap_after == 0 or gap_before is None or gap_after < gap_before
    )
    if progress:
        values: dict[str, Any] = {"last_progress_at": now}
        if domain.uncooperative:
            values["uncooperative"] = False
            record_event(
                session,
                actor,
                "domain.cooperative",
                "domain",
                domain.id,
                before={"uncooperative": True},
                after={"uncooperative": False},
            )
        write_status(session, domain, **values)
    complete_pool_steps(session, domain.id, reported, now, by="host agent")
    after = {vn.index: vn.actual_mib for vn in domain.vnodes}
    if after != before:
        record_event(
            session,
            actor,
            "domain.actual_observed",
            "domain",
            domain.id,
            before={"actual_mib": {str(k): v for k, v in before.items()}},
            after={"actual_mib": {str(k): v for k, v in after.items()}, "progress": progress},
        )


def _drift(
    session: Session, state: HostState, now: datetime, settings: Settings, actor: str
) -> tuple[bool, list[DriftPnode]]:
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
    if flagged != host.drift_flagged:
        values["drift_flagged"] = flagged
        record_event(
            session,
            actor,
            "host.drift_flagged" if flagged else "host.drift_cleared",
            "host",
            host.id,
            before={"drift_flagged": not flagged},
            after={"drift_mib": {str(r.index): r.drift_mib for r in rows}},
        )
    write_status(session, host, **values)
    return flagged, rows


def agent_report(
    session: Session,
    host_id: str,
    body: AgentReportIn,
    now: datetime,
    settings: Settings,
    actor: str,
) -> AgentReportOut:
    """Record one batch report under the host's lock; unknown domains are listed, not errors
    (a domain that just migrated away may still be reported once)."""
    state = load_host_state(session, host_id, lock=True)
    if state is None:
        raise NotFound(f"no host with id {host_id}")
    _validate(state, body)
    for p in body.pnodes:
        state.host.pnodes[p.index].observed_free_mib = p.free_mib  # Pnode: no version
    unknown: list[str] = []
    accepted = 0
    for d in body.domains:
        domain = state.domain(d.domain_id)
        if domain is None:
            unknown.append(d.domain_id)
            continue
        _observe_domain(session, domain, {v.index: v.actual_mib for v in d.vnodes}, now, actor)
        accepted += 1
    write_accounting(state)
    sweep(session, state.domains, now, settings, actor)
    flagged, rows = _drift(session, state, now, settings, actor)
    session.flush()
    return AgentReportOut(
        host_id=host_id,
        domains_accepted=accepted,
        unknown_domains=unknown,
        drift_flagged=flagged,
        drift=rows,
    )
