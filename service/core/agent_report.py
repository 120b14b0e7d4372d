"""The host agent's batch report: free memory per pnode and every domain's per-vnode actual size
as the hypervisor sees it, in one request per host per interval.

Status only (spec/status split): the report writes observed sizes, progress timestamps, the
uncooperative flag, drift and the materialized accounting, never a toolstack-owned field, so no
domain's or host's ``version`` (ETag) moves: they go through `apply` as the change set's status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from service.core import unit
from service.core.balloon import (
    capped,
    complete_pool_steps,
    observe,
    off_target_mib,
    stall_time,
    stalled,
    within_headroom,
)
from service.core.unit import Database
from service.db.accounting import HostAccounting
from service.db.apply import apply, write_observed_free, write_observed_free_plain
from service.db.changes import ChangeSet, event
from service.db.models import Domain
from service.db.raw import PlainTransaction
from service.db.report_rows import load_report_accounting
from service.db.report_view import (
    DomainView,
    ReportView,
    foreign_domains,
    load_report_view,
    load_report_view_plain,
)
from service.errors import Conflict, InvalidInput, NotFound
from service.schemas.agent import AgentReportIn, AgentReportOut, DriftPnode, ReportVnode
from service.settings import Settings


def pnode_errors(state: HostAccounting, indexes: Sequence[int]) -> list[dict[str, Any]]:
    """Located errors for reported pnode indexes the host does not have, or that come twice
    (one pnode has one free size: with two, the last one silently won)."""
    n = state.n_pnodes
    errors: list[dict[str, Any]] = []
    seen: set[int] = set()
    for i, index in enumerate(indexes):
        loc = ["body", "pnodes", i, "index"]
        if index >= n:
            errors.append({"loc": loc, "msg": f"the host has pnodes 0..{n - 1}"})
        elif index in seen:
            errors.append({"loc": loc, "msg": f"pnode {index} reported twice"})
        seen.add(index)
    return errors


def _vnode_errors(domain: Domain, i: int, vnodes: Sequence[ReportVnode]) -> list[dict[str, Any]]:
    """Located errors for one reported domain's vnodes: unknown, twice, or larger than the
    vnode's span (its size: no pool holds more than the memory its vnode spans)."""
    k = len(domain.vnodes)
    errors: list[dict[str, Any]] = []
    seen: set[int] = set()
    for j, vn in enumerate(vnodes):
        loc: list[str | int] = ["body", "domains", i, "vnodes", j]
        if vn.index >= k:
            errors.append({"loc": [*loc, "index"], "msg": f"the domain has vnodes 0..{k - 1}"})
            continue
        if vn.index in seen:
            errors.append({"loc": [*loc, "index"], "msg": f"vnode {vn.index} reported twice"})
        seen.add(vn.index)
        size = domain.vnodes[vn.index].size_mib
        if vn.actual_mib > size:
            msg = f"above vnode {vn.index}'s size ({size} MiB)"
            errors.append({"loc": [*loc, "actual_mib"], "msg": msg})
    return errors


def validate_report(state: HostAccounting, body: AgentReportIn) -> None:
    """422 with every nonsense located: pnodes the host lacks or named twice, a domain twice,
    vnodes a domain lacks, named twice or reported above their size. Changes nothing."""
    errors = pnode_errors(state, [p.index for p in body.pnodes])
    seen_domains: set[str] = set()
    for i, d in enumerate(body.domains):
        if d.domain_id in seen_domains:
            errors.append({"loc": ["body", "domains", i, "domain_id"], "msg": "reported twice"})
        seen_domains.add(d.domain_id)
        domain = state.domain(d.domain_id)
        if domain is not None:
            errors.extend(_vnode_errors(domain, i, d.vnodes))
    if errors:
        raise InvalidInput("the report does not fit this host and its domains", errors=errors)


def refuse_foreign(session: Session, host_id: str, body: AgentReportIn, unknown: list[str]) -> None:
    """409 when a reported domain is another host's and not migrating to or from this one: the
    agent sees a guest where numa-balloon says it is not (ids it does not know at all stay
    listed as unknown: a host may run guests numa-balloon does not manage)."""
    foreign = foreign_domains(session, host_id, unknown)
    if not foreign:
        return
    errors = [
        {
            "loc": ["body", "domains", i, "domain_id"],
            "msg": f"domain {d.domain_id} is on another host, not migrating to or from this one",
        }
        for i, d in enumerate(body.domains)
        if d.domain_id in foreign
    ]
    raise Conflict(
        f"{len(foreign)} reported domain(s) on another host, not migrating to or from this one",
        errors=errors,
        foreign_domain_ids=sorted(foreign),
    )


def drift_rows(
    accounted_free_mib: Sequence[int],
    observed_free_mib: Sequence[int | None],
    threshold_mib: int,
    *,
    flagged_before: bool = False,
    clear_below_mib: int | None = None,
) -> tuple[bool, list[DriftPnode]]:
    """Each pnode's observed free memory against the accounting's, and whether the host is
    flagged: one pnode differs by more than the threshold; a host flagged before stays flagged
    until every pnode differs by less than `clear_below_mib` (hysteresis: a drift hovering
    around the threshold flapped, 6 flags and 5 clears in a few minutes)."""
    rows = [
        DriftPnode(
            index=i,
            accounted_free_mib=accounted,
            observed_free_mib=observed,
            drift_mib=None if observed is None else observed - accounted,
        )
        for i, (accounted, observed) in enumerate(
            zip(accounted_free_mib, observed_free_mib, strict=True)
        )
    ]
    drifts = [abs(r.drift_mib) for r in rows if r.drift_mib is not None]
    flagged = any(d > threshold_mib for d in drifts)
    if flagged_before and not flagged:
        clear = threshold_mib if clear_below_mib is None else clear_below_mib
        flagged = any(d >= clear for d in drifts)
    return flagged, rows


def drift(
    state: HostAccounting,
    observed_free_mib: Mapping[int, int],
    now: datetime,
    settings: Settings,
    actor: str,
    *,
    stamped: bool = False,
) -> tuple[bool, list[DriftPnode], ChangeSet]:
    """`drift_rows` of the loaded accounting and the pnodes' newly observed free MiB (the others
    keep what they held), with the observation, the flag's change and its event (pure).
    `stamped`: the host's `observed_at` already says `now` (the report's lock wrote it)."""
    accounted = (state.capacity_mib - state.claimed_mib - state.allocated_mib()).tolist()
    observed = [observed_free_mib.get(p.index, p.observed_free_mib) for p in state.host.pnodes]
    host = state.host
    flagged, rows = drift_rows(
        accounted,
        observed,
        settings.drift_threshold_mib,
        flagged_before=host.drift_flagged,
        clear_below_mib=settings.drift_clear_below_mib,
    )
    values: dict[str, Any] = {} if stamped else {"observed_at": now}
    changes = ChangeSet(observed_free_mib=dict(observed_free_mib))
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
                at=now,
            )
        )
    if values:
        changes.status.append((host, values))
    return flagged, rows, changes


def settled(view: ReportView, body: AgentReportIn, now: datetime, settings: Settings) -> bool:
    """Whether the report changes nothing but the observation itself (pure): every reported pool
    is what the service holds, no pool step is pending for a reported domain, no driver is to be
    flagged or cleared, and no claim on the host could lapse. Anything else, an invalid report
    included, takes the full path, which writes it or refuses it."""
    if any(view.claimed_mib) or any(p.index >= len(view.claimed_mib) for p in body.pnodes):
        return False
    if len({p.index for p in body.pnodes}) != len(body.pnodes):
        return False
    if len({d.domain_id for d in body.domains}) != len(body.domains):
        return False
    for d in body.domains:
        domain = view.domains.get(d.domain_id)
        if domain is None or domain.pending_pool_steps or not _repeats(domain, d.vnodes):
            return False
        if domain.uncooperative and _gap(domain) == 0:
            return False  # observe clears the flag of a driver found at its target
    limit = timedelta(seconds=settings.uncooperative_after_s)
    return not any(_stalls(d, now, limit) for d in view.domains.values() if not d.uncooperative)


def _repeats(domain: DomainView, vnodes: Sequence[ReportVnode]) -> bool:
    """Every reported vnode exists once and is taken to be the size the service holds."""
    seen: set[int] = set()
    for vn in vnodes:
        i = vn.index
        if i >= len(domain.actual_mib) or i in seen or vn.actual_mib > domain.size_mib[i]:
            return False
        seen.add(i)
        held = domain.actual_mib[i]
        if vn.actual_mib == held:
            continue  # what it holds, at most its size: taken as it is (`capped`)
        size = capped(
            vn.actual_mib,
            target_mib=domain.vnode_target_mib[i],
            actual_mib=held,
            size_mib=domain.size_mib[i],
            block_mib=domain.block_mib,
        )
        if held is None or size != held:
            return False
    return True


def _gap(domain: DomainView) -> int | None:
    if domain.actual_mib == domain.vnode_target_mib:
        return 0  # every pool reported at its target (the usual case): nothing to measure
    return off_target_mib(domain.actual_mib, domain.vnode_target_mib, domain.block_mib)


def _stalls(domain: DomainView, now: datetime, limit: timedelta) -> bool:
    """Whether the domain's `stall_time` is beyond `limit`. One whose target or progress is
    more recent than that cannot be, so its pools are not compared (the usual case)."""
    since = max(domain.last_progress_at or domain.target_set_at, domain.target_set_at)
    if now - since <= limit:
        return False
    stall = stall_time(
        _gap(domain),
        last_progress_at=domain.last_progress_at,
        target_set_at=domain.target_set_at,
        now=now,
    )
    return stall > limit


def _settled_report(
    session: Session, view: ReportView, host_id: str, body: AgentReportIn, settings: Settings
) -> AgentReportOut | None:
    """The answer to a settled report whose drift flag stays as it is, with the observed free
    memory written; None when the flag would move (the full path writes that and its event)."""
    answer = settled_answer(view, host_id, body, settings)
    if answer is None:
        return None
    out, free_mib = answer
    write_observed_free(session, host_id, free_mib)
    return out


def settled_answer(
    view: ReportView, host_id: str, body: AgentReportIn, settings: Settings
) -> tuple[AgentReportOut, dict[int, int]] | None:
    """A settled report's answer and the observed free MiB to write (the pnodes whose value
    moved), when its drift flag stays as it is (pure); None when it would move."""
    reported = {p.index: p.free_mib for p in body.pnodes}
    observed = [reported.get(i, was) for i, was in enumerate(view.observed_free_mib)]
    flagged, rows = drift_rows(
        view.accounted_free_mib,
        observed,
        settings.drift_threshold_mib,
        flagged_before=view.drift_flagged,
        clear_below_mib=settings.drift_clear_below_mib,
    )
    if flagged != view.drift_flagged:
        return None
    was = view.observed_free_mib
    out = AgentReportOut(
        host_id=host_id,
        domains_accepted=len(body.domains),
        unknown_domains=[],
        drift_flagged=flagged,
        drift=rows,
    )
    return out, {i: f for i, f in reported.items() if f != was[i]}


# The decision runs on the event loop, where nothing else of the worker runs meanwhile: a host of
# more domains than this (a report that names more) is decided in the thread pool, so one large
# report cannot hold up the worker's renewals (~1 us a vnode: a few ms at most here).
LOOP_MAX_DOMAINS = 256


async def settled_on_loop(
    db: Database, host_id: str, body: AgentReportIn, now: datetime, settings: Settings
) -> AgentReportOut | None:
    """A settled report (the usual one), its unit awaited on the event loop on a plain
    connection (`unit.on_plain`): the host locked and read as `agent_report` does, the
    observation written, committed. None when the report is not settled (rolled back: nothing
    written) or that path is not available now: the caller then runs `batch_report` in the
    thread pool, which reads the host again. The commit does not wait for the WAL flush
    (ADR 0009): a settled report writes only the observation, never memory, a flag or an
    event."""

    if len(body.domains) > LOOP_MAX_DOMAINS:
        return None

    async def work(tx: PlainTransaction) -> AgentReportOut | None:
        view = await load_report_view_plain(tx, host_id, now)
        if view is None or len(view.domains) > LOOP_MAX_DOMAINS:
            return None
        if not settled(view, body, now, settings):
            return None
        answer = settled_answer(view, host_id, body, settings)
        if answer is None:
            return None
        out, free_mib = answer
        await write_observed_free_plain(tx, host_id, free_mib)
        return out

    got = await unit.on_plain(db, lambda plain: plain.transaction(work))
    return None if isinstance(got, unit.NotNow) else got


def agent_report(
    session: Session,
    host_id: str,
    body: AgentReportIn,
    now: datetime,
    settings: Settings,
    actor: str,
) -> tuple[AgentReportOut, set[str]]:
    """Record one batch report under the host's lock. Ids numa-balloon does not know, and
    domains migrating to or from this host but placed on the other, are listed as unknown; a
    domain of another host is refused (409). Also returns the migrations whose pool steps the
    report completed (to drive on after the commit).

    A settled report (the usual one) is answered from plain rows and writes only the
    observation; any other loads the host's accounting and goes through `apply`."""
    view = load_report_view(session, host_id, now)  # locks the host
    if view is None:
        raise NotFound(f"no host with id {host_id}")
    if settled(view, body, now, settings):
        out = _settled_report(session, view, host_id, body, settings)
        if out is not None:
            return out, set()
    state = load_report_accounting(session, host_id, now)
    if state is None:
        raise NotFound(f"no host with id {host_id}")
    state.keep_arrays()  # the rows change only through `apply` below
    validate_report(state, body)
    not_here = [d.domain_id for d in body.domains if state.domain(d.domain_id) is None]
    refuse_foreign(session, host_id, body, not_here)
    unknown: list[str] = []
    observed = ChangeSet()
    reports: dict[str, dict[int, int]] = {}
    headroom = state.capacity_mib - state.claimed_mib - state.allocated_mib()
    for d in body.domains:
        domain = state.domain(d.domain_id)
        if domain is None:
            unknown.append(d.domain_id)
            continue
        reports[domain.id] = {v.index: v.actual_mib for v in d.vnodes}
        changes, _ = observe(
            domain,
            reports[domain.id],
            now,
            actor=actor,
            action="domain.actual_observed",
            fit=partial(
                within_headroom,
                domain=domain,
                headroom_mib=headroom,
                backing=state.backing[domain.id],
            ),
        )
        observed.extend(changes)
    apply(session, state, observed, now=now)
    moved_on = complete_pool_steps(session, reports, now, by="host agent")
    # After the reports: a driver that just made progress is not stalled.
    free = {p.index: p.free_mib for p in body.pnodes}
    flagged, rows, drifted = drift(state, free, now, settings, actor, stamped=True)
    changes = stalled(state.domains, now, settings, actor=actor).merge(drifted)
    apply(session, state, changes, now=now)
    out = AgentReportOut(
        host_id=host_id,
        domains_accepted=len(reports),
        unknown_domains=unknown,
        drift_flagged=flagged,
        drift=rows,
    )
    return out, moved_on
