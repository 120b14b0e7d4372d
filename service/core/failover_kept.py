"""Whether the protection's plan holds, answered from a plan kept per worker and brought up to
date with only what changed (issue 26's admission goal: 50 ms added to a create at 10,000 hosts,
where planning again reads 200,000 domains).

The kept state is a plan of the protection's r (the engine's `FailoverState`), the inputs it was
built from, and the PostgreSQL snapshot those inputs are as of. It is only ever built or moved
forward from committed rows: by a clean transaction (one that has written nothing, like
`GET /v1/cluster`), or in a session of its own (`service.db.failover.clean_session`).

A check in any transaction (an admission's, which has just written its change) asks which hosts
changed since the kept snapshot (`changed_since`: triggers stamp `hosts.changed_xid` whenever
anything the planner reads of a host or its domains changes, migration failover_stamps), reads
those hosts and their protected domains as this transaction sees them, turns the difference into
the engine's `HostChange` / `DomainChange` rows and calls `check_change`. The engine re-checks
only the scenarios the difference touches and answers what planning from scratch over the same
rows would (docs/failover.md, "Admission"). Every other host is as the kept inputs have it: its
last change is visible in the kept snapshot, and the kept rows were read after that snapshot.

An admission's answer is not kept (its transaction may roll back); a clean check's is. When the
difference is large (more than `DIFF_HOSTS` hosts) the kept state is first moved forward in a
session of its own; when it cannot be expressed as changes (a host added or removed, a SLIT
changed, a pnode more) or the protection's settings changed, the plan is built again from
scratch, and kept. SQLite has no snapshots: there every check plans from scratch.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from service.core.failover_inputs import (
    Inputs,
    eligible,
    guest_of,
    load_inputs,
)
from service.db.failover import (
    HostRows,
    ProtectedRows,
    changed_since,
    clean_session,
    load_hosts,
    load_protected,
    snapshot,
)
from service.engine.errors import InputError
from service.engine.failover import (
    DomainChange,
    FailoverPlan,
    FailoverState,
    HostChange,
    Unplaced,
    check_change,
    plan_failover,
)
from service.schemas.failover import UnplacedOut

# Beyond this many changed hosts, the kept state is moved forward before a check (and beyond a
# quarter of the hosts, built again: so many changes cost more than a plan).
DIFF_HOSTS = 64


@dataclass(frozen=True)
class Settings:
    """What a kept plan answers for: the protection's r, selector and spread."""

    host_failures: int
    selector: tuple[tuple[str, str], ...]
    allow_spread: bool


@dataclass(frozen=True)
class Verdict:
    """Whether the plan holds; when not, a scenario that breaks it and what it strands."""

    tolerated: bool
    exact: bool
    failed_host_ids: list[str]
    stranded: list[UnplacedOut]
    protected_domains: int


@dataclass(frozen=True)
class Kept:
    """A plan of ``settings`` over the rows committed as of ``snapshot`` (see the docstring).
    Domain lists are in the engine's order: a domain keeps its index once it has one
    (``dom_key`` None: not protected now)."""

    settings: Settings
    database: int
    snapshot: str
    hosts: HostRows
    host_index: dict[str, int]
    eligible: np.ndarray
    n_pnodes: np.ndarray
    dom_ids: list[str]
    dom_names: list[str]
    dom_key: list[str | None]
    dom_index: dict[str, int]
    shapes: dict[str, tuple[Any, Any, Any]]
    state: FailoverState
    verdict: Verdict


_KEPT: dict[str, Kept] = {}
# How often a plan was built from scratch, and how often a check was answered by the engine's
# check_change (tests and benchmarks look).
COUNTS = {"built": 0, "changes": 0}
_LOCKS: dict[str, threading.Lock] = {}
_LOCK = threading.Lock()


def _where(session: Session) -> str:
    return session.get_bind().engine.url.render_as_string(hide_password=False)


def _lock(where: str) -> threading.Lock:
    with _LOCK:
        return _LOCKS.setdefault(where, threading.Lock())


def forget() -> None:
    """Drop every kept plan (tests)."""
    _KEPT.clear()


# --------------------------------------------------------------------------- from scratch


def plan_inputs(inputs: Inputs, s: Settings) -> FailoverPlan | None:
    """The plan of r without max_host_failures or restarts; None when r exceeds the hosts."""
    if s.host_failures > inputs.engine_hosts.n_hosts:
        return None
    return plan_failover(
        inputs.engine_hosts,
        inputs.engine_domains,
        host_failures=s.host_failures,
        allow_spread=s.allow_spread,
        find_max=False,
        with_restarts=False,
    )


def plan_verdict(inputs: Inputs, plan: FailoverPlan | None) -> Verdict:
    prot = inputs.protected
    if plan is None:  # every host fails: none survives
        return Verdict(
            tolerated=not prot.ids,
            exact=True,
            failed_host_ids=list(inputs.hosts.ids),
            stranded=[
                UnplacedOut(domain_id=d, domain_name=n, reason="every host fails: none survives")
                for d, n in zip(prot.ids, prot.names, strict=True)
            ],
            protected_domains=len(prot.ids),
        )
    w = plan.worst
    return Verdict(
        tolerated=plan.tolerated,
        exact=plan.exact,
        failed_host_ids=[] if w is None else [inputs.hosts.ids[h] for h in w.failed_hosts],
        stranded=[]
        if w is None
        else [
            UnplacedOut(
                domain_id=prot.ids[u.domain], domain_name=prot.names[u.domain], reason=u.reason
            )
            for u in w.unplaced
        ],
        protected_domains=len(prot.ids),
    )


def _build(session: Session, s: Settings) -> tuple[Kept | None, Verdict]:
    """Plan from scratch; the kept state when the session's rows are committed ones."""
    snap, database = snapshot(session)
    COUNTS["built"] += 1
    inputs = load_inputs(session, list(s.selector))
    plan = plan_inputs(inputs, s)
    verdict = plan_verdict(inputs, plan)
    if plan is None:
        return None, verdict
    prot, hosts = inputs.protected, inputs.hosts
    kept = Kept(
        settings=s,
        database=database,
        snapshot=snap,
        hosts=hosts,
        host_index=hosts.index(),
        eligible=inputs.engine_hosts.eligible,
        n_pnodes=np.array([x.shape[0] for x in inputs.engine_hosts.shapes], dtype=np.int64)[
            inputs.engine_hosts.shape
        ],
        dom_ids=prot.ids,
        dom_names=prot.names,
        dom_key=list(prot.shape_keys),
        dom_index={d: i for i, d in enumerate(prot.ids)},
        shapes=prot.shapes,
        state=plan.state,
        verdict=verdict,
    )
    return kept, verdict


# --------------------------------------------------------------------------- the difference


@dataclass(frozen=True)
class Diff:
    """The changed hosts' rows as a check sees them, as the engine's changes; ``new_ids`` /
    ``new_names``: the domains protected for the first time, in the indices they get."""

    rows: HostRows
    prot: ProtectedRows
    hosts: tuple[HostChange, ...]
    domains: tuple[DomainChange, ...]
    new_ids: list[str]
    new_names: list[str]


def _host_changes(kept: Kept, rows: HostRows) -> tuple[HostChange, ...] | None:
    """A change per host whose free, squeezable MiB or eligibility moved; None when a host is
    new or has another SLIT (not a change the engine takes)."""
    elig = eligible(rows.states, rows.agents)
    width = kept.hosts.free_mib.shape[1]
    if rows.free_mib.shape[1] > width:
        return None
    out: list[HostChange] = []
    for j, host_id in enumerate(rows.ids):
        h = kept.host_index.get(host_id)
        if h is None or rows.keys[j] != kept.hosts.keys[h]:
            return None
        p = int(kept.n_pnodes[h])
        free, sq = rows.free_mib[j, :p], rows.squeezable_mib[j, :p]
        free_moved = not np.array_equal(free, kept.hosts.free_mib[h, :p])
        sq_moved = not np.array_equal(sq, kept.hosts.squeezable_mib[h, :p])
        el_moved = bool(elig[j]) != bool(kept.eligible[h])
        if free_moved or sq_moved or el_moved:
            out.append(
                HostChange(
                    host=h,
                    free_mib=free.copy() if free_moved else None,
                    squeezable_mib=sq.copy() if sq_moved else None,
                    eligible=bool(elig[j]) if el_moved else None,
                )
            )
    return tuple(out)


def _domain_changes(
    kept: Kept, rows: HostRows, prot: ProtectedRows
) -> tuple[tuple[DomainChange, ...], list[str], list[str]] | None:
    """A change per protected domain of the changed hosts that was added, moved, reshaped or
    is no longer protected; None when one runs on a host the kept rows lack."""
    prob = kept.state.ctx.prob
    n = len(kept.dom_ids)
    out: list[DomainChange] = []
    new_ids: list[str] = []
    new_names: list[str] = []
    for j, dom_id in enumerate(prot.ids):
        h = kept.host_index.get(prot.host_ids[j])
        if h is None:
            return None
        k = prot.shape_keys[j]
        i = kept.dom_index.get(dom_id)
        if i is not None and i < n:
            if kept.dom_key[i] == k and int(prob.dom_host[i]) == h:
                continue
            out.append(DomainChange(domain=i, host=h, guest=guest_of(prot, k)))
        else:
            out.append(DomainChange(domain=None, host=h, guest=guest_of(prot, k)))
            new_ids.append(dom_id)
            new_names.append(prot.names[j])
    seen = set(prot.ids)
    for host_id in rows.ids:
        h = kept.host_index[host_id]
        for i in prob.domains_of(h).tolist():
            if kept.dom_ids[i] not in seen:
                out.append(DomainChange(domain=i, host=h, guest=None))
    return tuple(out), new_ids, new_names


def _diff(session: Session, kept: Kept, host_ids: list[str]) -> Diff | None:
    rows = load_hosts(session, host_ids=host_ids, width=kept.hosts.free_mib.shape[1])
    prot = load_protected(
        session, list(kept.settings.selector), host_ids=host_ids, known=kept.shapes
    )
    hosts = _host_changes(kept, rows)
    doms = _domain_changes(kept, rows, prot) if hosts is not None else None
    if hosts is None or doms is None:
        return None
    return Diff(
        rows=rows, prot=prot, hosts=hosts, domains=doms[0], new_ids=doms[1], new_names=doms[2]
    )


def _admission_verdict(
    kept: Kept,
    diff: Diff,
    tolerated: bool,
    exact: bool,
    failed: tuple[int, ...],
    stranded: tuple[Unplaced, ...],
) -> Verdict:
    n = len(kept.dom_ids)

    def dom(d: int) -> tuple[str, str]:
        if d < n:
            return kept.dom_ids[d], kept.dom_names[d]
        return diff.new_ids[d - n], diff.new_names[d - n]

    return Verdict(
        tolerated=tolerated,
        exact=exact,
        failed_host_ids=[kept.hosts.ids[h] for h in failed],
        stranded=[
            UnplacedOut(domain_id=dom(u.domain)[0], domain_name=dom(u.domain)[1], reason=u.reason)
            for u in stranded
        ],
        protected_domains=kept.verdict.protected_domains + _protected_delta(kept, diff),
    )


def _protected_delta(kept: Kept, diff: Diff) -> int:
    """How many more domains are protected after the diff than before."""
    delta = len(diff.new_ids)
    for dc in diff.domains:
        if dc.domain is None:
            continue
        was = kept.dom_key[dc.domain] is not None
        delta += (dc.guest is not None) - was
    return delta


def _forward(kept: Kept, diff: Diff, state: FailoverState, snap: str, verdict: Verdict) -> Kept:
    """``kept`` with the diff applied, as of ``snap`` (its rows must be committed ones)."""
    rows = diff.rows
    at = [kept.host_index[h] for h in rows.ids]
    free, sq = kept.hosts.free_mib.copy(), kept.hosts.squeezable_mib.copy()
    free[at], sq[at] = rows.free_mib, rows.squeezable_mib
    states, agents = list(kept.hosts.states), list(kept.hosts.agents)
    for j, h in enumerate(at):
        states[h], agents[h] = rows.states[j], rows.agents[j]
    elig = kept.eligible.copy()
    elig[at] = eligible(rows.states, rows.agents)
    hosts = dataclasses.replace(
        kept.hosts, states=states, agents=agents, free_mib=free, squeezable_mib=sq
    )
    dom_key = list(kept.dom_key)
    key_of = dict(zip(diff.prot.ids, diff.prot.shape_keys, strict=True))
    for dc in diff.domains:
        if dc.domain is not None:
            dom_key[dc.domain] = None if dc.guest is None else key_of[kept.dom_ids[dc.domain]]
    dom_ids, dom_names, dom_index = kept.dom_ids, kept.dom_names, kept.dom_index
    if diff.new_ids:
        dom_ids, dom_names = [*dom_ids, *diff.new_ids], [*dom_names, *diff.new_names]
        dom_key += [key_of[d] for d in diff.new_ids]
        dom_index = {**dom_index, **{d: len(kept.dom_ids) + i for i, d in enumerate(diff.new_ids)}}
    return dataclasses.replace(
        kept,
        snapshot=snap,
        hosts=hosts,
        eligible=elig,
        dom_ids=dom_ids,
        dom_names=dom_names,
        dom_key=dom_key,
        dom_index=dom_index,
        shapes=diff.prot.shapes,
        state=state,
        verdict=verdict,
    )


def _check(session: Session, kept: Kept, host_ids: list[str]) -> tuple[Verdict, Diff, Any] | None:
    """The verdict after the changed hosts' rows as ``session`` sees them, the diff and the
    engine's state after it; None when the difference is not one the engine takes."""
    diff = _diff(session, kept, host_ids)
    if diff is None:
        return None
    if not diff.hosts and not diff.domains:
        return kept.verdict, diff, kept.state
    try:
        adm = check_change(kept.state, hosts=diff.hosts, domains=diff.domains)
    except InputError:  # a row the engine refuses: planning from scratch says which
        return None
    COUNTS["changes"] += 1
    v = _admission_verdict(kept, diff, adm.tolerated, adm.exact, adm.failed_hosts, adm.stranded)
    return v, diff, adm.state


# --------------------------------------------------------------------------- the entry point


def _store(where: str, kept: Kept | None) -> None:
    if kept is not None:
        _KEPT[where] = kept


def _refresh(session: Session, where: str, s: Settings) -> Kept | None:
    """The kept state moved forward (or built) from committed rows, in a session of its own."""
    with _lock(where), clean_session(session.get_bind()) as own:
        kept = _KEPT.get(where)
        if kept is not None and kept.settings == s:
            ch = changed_since(own, kept.snapshot)
            n = len(kept.hosts.ids)
            small = len(ch.host_ids) <= max(DIFF_HOSTS, n // 4)
            if ch.database == kept.database and ch.n_hosts == n and small:
                found = _check(own, kept, ch.host_ids)
                if found is not None:
                    moved = _forward(kept, found[1], found[2], ch.snapshot, found[0])
                    _store(where, moved)
                    return moved
        built, _ = _build(own, s)
        _store(where, built)
        return built


def verdict(session: Session, s: Settings) -> Verdict:
    """Whether the protection's plan holds over the rows ``session`` sees (see the docstring)."""
    if session.get_bind().dialect.name != "postgresql":
        return plan_verdict(*_scratch(session, s))
    where = _where(session)
    kept = _KEPT.get(where)
    for attempt in range(2):
        if kept is None or kept.settings != s:
            kept = _refresh(session, where, s)
            if kept is None:  # r exceeds the hosts: nothing to keep
                return plan_verdict(*_scratch(session, s))
        ch = changed_since(session, kept.snapshot)
        stale = ch.database != kept.database or ch.n_hosts != len(kept.hosts.ids)
        if attempt == 0 and (stale or len(ch.host_ids) > DIFF_HOSTS):
            kept = None
            continue
        found = None if stale else _check(session, kept, ch.host_ids)
        if found is None:
            if attempt == 0:
                kept = None
                continue
            return plan_verdict(*_scratch(session, s))
        if ch.clean:
            _store(where, _forward(kept, found[1], found[2], ch.snapshot, found[0]))
        return found[0]
    raise AssertionError("unreachable")


def _scratch(session: Session, s: Settings) -> tuple[Inputs, FailoverPlan | None]:
    inputs = load_inputs(session, list(s.selector))
    return inputs, plan_inputs(inputs, s)
