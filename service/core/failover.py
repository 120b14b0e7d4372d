"""Failover planning, protection and admission (issue 26; model and proofs: docs/failover.md).

`plan` answers `POST /v1/cluster/failover-plan`: it loads every host and the protected domains
as arrays (`service.db.failover`, two statements), calls the engine's `plan_failover` once
and maps indices to ids. Nothing is written.

Protection (`PATCH /v1/cluster` `{"ha": {...}}`) is stored in `cluster_settings.ha`. With it on,
`admit` is called by every change that could break the plan (a domain created, a target
raised, a migration started, a host set to maintenance) after the change is written and before
its unit commits: it locks the settings row (so two such changes are checked one after the
other: each sees the other's memory, no write skew), checks whether the plan still holds (the
worker's kept plan and `check_change` over what changed since: `service.core.failover_kept`,
exactly what planning again would say) and refuses with
`WouldBreakFailoverPlan` (409 `/problems/would-break-failover-plan`) naming the scenario and
the domains it strands, unless the caller asked for `ha_overcommit` (an event records it).

The `overcommitted` flag says the plan is known not to hold (an overcommit let through, or
protection turned on while it did not hold): changes are then let through unrefused, and the
first check that finds the plan tolerated again clears it (event `cluster.ha_restored`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from service.core.failover_inputs import Inputs, Selector, eligible, load_inputs
from service.core.failover_kept import Settings, Verdict, verdict
from service.core.unit import discard
from service.db.audit import record_event
from service.db.cluster import get_cluster
from service.db.models import ClusterSettings
from service.engine.errors import InputError
from service.engine.failover import FailoverPlan, plan_failover
from service.errors import Conflict, Forbidden, InvalidInput, WouldBreakFailoverPlan
from service.schemas.common import LABEL_KEY_PATTERN
from service.schemas.failover import (
    FailoverPlanOut,
    FailoverPlanRequest,
    HaOut,
    HaSettings,
    RestartOut,
    UnplacedOut,
    VnodeHome,
    WorstOut,
)

__all__ = ["Inputs", "eligible", "load_inputs"]

_KEY = re.compile(LABEL_KEY_PATTERN)
# Roles that may let a change through a broken plan (`?ha_overcommit=true`).
OVERCOMMIT_ROLES = ("admin", "operator")


def parse_selector(text: str | None, loc: Sequence[str | int]) -> Selector:
    """`key=value[,key=value...]` as pairs; a malformed one is a 422 located at ``loc``."""
    if text is None or not text.strip():
        return []
    out: Selector = []
    for i, part in enumerate(text.split(",")):
        key, sep, value = part.strip().partition("=")
        if not sep or not _KEY.match(key):
            raise InvalidInput(
                f"label_selector: {part.strip()!r} is not key=value",
                errors=[{"loc": [*loc], "msg": f"pair {i} is not key=value"}],
            )
        out.append((key, value))
    return out


def cluster_settings(session: Session, *, lock: bool = False) -> ClusterSettings:
    try:
        return get_cluster(session, lock=lock)
    except LookupError as exc:
        raise Conflict(str(exc)) from exc


def run_plan(
    inputs: Inputs,
    host_failures: int,
    *,
    allow_spread: bool = False,
    find_max: bool = True,
    with_restarts: bool = True,
) -> FailoverPlan | None:
    """The engine's plan; None when r exceeds the hosts (every host fails: nothing survives)."""
    if host_failures > inputs.engine_hosts.n_hosts:
        return None
    return plan_failover(
        inputs.engine_hosts,
        inputs.engine_domains,
        host_failures=host_failures,
        allow_spread=allow_spread,
        find_max=find_max,
        with_restarts=with_restarts,
    )


def _unplaced(inputs: Inputs, plan: FailoverPlan) -> list[UnplacedOut]:
    if plan.worst is None:
        return []
    return [
        UnplacedOut(
            domain_id=inputs.protected.ids[u.domain],
            domain_name=inputs.protected.names[u.domain],
            reason=u.reason,
        )
        for u in plan.worst.unplaced
    ]


def plan_out(inputs: Inputs, plan: FailoverPlan, duration_ms: float) -> FailoverPlanOut:
    """The engine's plan in the words of the API (indices become ids)."""
    ids = inputs.hosts.ids
    dom_ids = inputs.protected.ids
    worst = None
    if plan.worst is not None:
        w = plan.worst
        worst = WorstOut(
            failed_host_ids=[ids[h] for h in w.failed_hosts],
            free_after_mib=w.free_after_mib,
            squeeze_mib=w.squeeze_mib,
            unplaced=_unplaced(inputs, plan),
            proven=w.proven,
        )
    r = plan.restarts
    restarts = [
        RestartOut(
            failed_host_id=ids[int(r.failed_host[i])],
            domain_id=dom_ids[int(r.domain[i])],
            host_id=ids[int(r.host[i])],
            vnodes=[VnodeHome(vnode=v, pnode=p) for v, p in r.vnodes(i)],
            distortion=round(float(r.distortion[i]), 6),
        )
        for i in range(len(r))
    ]
    return FailoverPlanOut(
        host_failures=plan.host_failures,
        tolerated=plan.tolerated,
        max_host_failures=plan.max_host_failures,
        max_host_failures_exact=plan.max_host_failures_exact,
        exact=plan.exact,
        method=plan.method,
        note=plan.note,
        scenarios=plan.scenarios,
        searched=plan.searched,
        protected_domains=len(dom_ids),
        duration_ms=round(duration_ms, 3),
        worst=worst,
        restarts=restarts,
    )


def plan(session: Session, body: FailoverPlanRequest) -> FailoverPlanOut:
    """`POST /v1/cluster/failover-plan`: the plan for ``host_failures`` failures; nothing is
    written."""
    discard(session)
    selector = parse_selector(body.label_selector, ("body", "label_selector"))
    started = time.perf_counter()
    inputs = load_inputs(session, selector)
    n = inputs.engine_hosts.n_hosts
    if body.host_failures > n:
        raise InvalidInput(
            f"host_failures {body.host_failures} exceeds the {n} registered hosts",
            errors=[{"loc": ["body", "host_failures"], "msg": f"at most {n}"}],
        )
    try:
        found = run_plan(
            inputs, body.host_failures, allow_spread=body.allow_spread, with_restarts=body.restarts
        )
    except InputError as exc:  # the engine refused its inputs: a row the service cannot plan
        raise InvalidInput(f"the cluster cannot be planned: {exc}") from exc
    assert found is not None
    return plan_out(inputs, found, (time.perf_counter() - started) * 1000)


# --------------------------------------------------------------------------- protection


def settings_of(row: ClusterSettings) -> HaSettings | None:
    if row.ha is None:
        return None
    return HaSettings(
        host_failures=int(row.ha.get("host_failures", 1)),
        label_selector=row.ha.get("label_selector"),
        allow_spread=bool(row.ha.get("allow_spread", False)),
    )


def check(session: Session, ha: HaSettings) -> Verdict:
    """Whether the protection's plan holds over the rows ``session`` sees, from the worker's
    kept plan and what changed since (`service.core.failover_kept`)."""
    selector = parse_selector(ha.label_selector, ("body", "ha", "label_selector"))
    return verdict(
        session,
        Settings(
            host_failures=ha.host_failures,
            selector=tuple(selector),
            allow_spread=ha.allow_spread,
        ),
    )


def ha_out(session: Session, row: ClusterSettings) -> HaOut | None:
    """The protection and whether it holds now (the kept plan brought up to date: see
    `service.core.failover_kept`)."""
    ha = settings_of(row)
    if ha is None:
        return None
    assert row.ha is not None
    found = check(session, ha)
    return HaOut(
        host_failures=ha.host_failures,
        label_selector=ha.label_selector,
        allow_spread=ha.allow_spread,
        holds=found.tolerated,
        overcommitted=bool(row.ha.get("overcommitted", False)),
        exact=found.exact,
        protected_domains=found.protected_domains,
        worst_failed_host_ids=found.failed_host_ids,
        stranded=found.stranded,
    )


def set_protection(session: Session, ha: HaSettings | None, actor: str, now: datetime) -> None:
    """Turn protection on (or change it), or off with None. Turning it on in a cluster where the
    plan does not hold is allowed: the flag `overcommitted` says so until it holds again."""
    row = cluster_settings(session, lock=True)
    before = row.ha
    if ha is None:
        if before is not None:
            row.ha, row.updated_at = None, now
            record_event(
                session, actor, "cluster.ha_changed", "cluster", None, before=before, at=now
            )
        return
    found = check(session, ha)
    after: dict[str, Any] = {**ha.model_dump(), "overcommitted": not found.tolerated}
    if after != before:
        row.ha, row.updated_at = after, now
        record_event(
            session,
            actor,
            "cluster.ha_changed",
            "cluster",
            None,
            before=before,
            after={**after, "failed_host_ids": found.failed_host_ids},
            at=now,
        )


@dataclass(frozen=True)
class Overcommit:
    """What the caller asked: `?ha_overcommit=true`, and its role (None: not a role)."""

    requested: bool = False
    role: str | None = None

    def check_role(self) -> None:
        if self.requested and self.role not in OVERCOMMIT_ROLES:
            raise Forbidden("ha_overcommit=true needs the operator or admin role")


def admit(
    session: Session,
    action: str,
    subject_type: str,
    subject_id: str | None,
    actor: str,
    overcommit: Overcommit,
    now: datetime,
    *,
    protection_off: bool = False,
) -> None:
    """After a change is written (flushed), before its unit commits: refuse it when protection
    is on and the plan no longer holds (see the module docstring). Costs one statement when
    protection is off, none when the caller already read it off in this transaction after
    taking the host lock (`protection_off`: a target raise reads it with the domain's backing).
    A protection turned on since is the race an earlier read had too: it commits with a check
    that does not see this uncommitted change, whenever this change read the setting."""
    if protection_off:
        return
    row = cluster_settings(session)
    if row.ha is None:
        return
    session.refresh(row, with_for_update=True)  # changes checked one after the other
    ha = settings_of(row)
    if ha is None:
        return
    found = check(session, ha)
    flagged = bool(row.ha.get("overcommitted", False))
    if found.tolerated:
        if flagged:
            row.ha, row.updated_at = {**row.ha, "overcommitted": False}, now
            record_event(
                session,
                actor,
                "cluster.ha_restored",
                "cluster",
                None,
                after={"by": action},
                at=now,
            )
        return
    if flagged:
        return
    stranded = found.stranded
    scenario = found.failed_host_ids
    if overcommit.requested:
        row.ha, row.updated_at = {**row.ha, "overcommitted": True}, now
        record_event(
            session,
            actor,
            "cluster.ha_overcommitted",
            subject_type,
            subject_id,
            after={
                "action": action,
                "failed_host_ids": scenario,
                "stranded": [s.model_dump() for s in stranded],
            },
            at=now,
        )
        return
    names = ", ".join(s.domain_name for s in stranded[:5]) + (
        f" and {len(stranded) - 5} more" if len(stranded) > 5 else ""
    )
    raise WouldBreakFailoverPlan(
        f"{action} would leave the failover plan for {ha.host_failures} host failure(s) "
        f"broken: if host(s) {', '.join(scenario)} failed, {names or 'some domains'} could not "
        "restart; ?ha_overcommit=true lets it through",
        action=action,
        failed_host_ids=scenario,
        stranded=[s.model_dump() for s in stranded],
    )
