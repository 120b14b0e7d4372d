"""Host-wide squeeze/balance (XAPI squeezed's policy per NUMA node) and the worst-case template."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from service.core.balloon import actual_total, is_active, pool_change_rows, stalled
from service.core.domains import topology_of
from service.core.unit import discard
from service.db.accounting import HostAccounting
from service.db.apply import apply
from service.db.audit import record_event
from service.db.changes import ChangeSet, NewTarget, event
from service.db.cluster import get_cluster, host_shapes
from service.db.loaders import load_host_accounting
from service.engine.errors import InfeasibleError, TopologyError
from service.engine.squeeze import SqueezeInput, SqueezePlan, squeeze
from service.engine.template import worst_case_template
from service.errors import Infeasible, InvalidInput, NotFound, issues_to_errors
from service.schemas.squeeze import (
    Phase,
    SqueezedDomain,
    SqueezeRequest,
    SqueezeResult,
    TemplateVnode,
    WorstCaseTemplateOut,
)
from service.settings import Settings


def _request_vector(body: SqueezeRequest, n_pnodes: int) -> np.ndarray | None:
    if body.free_mib is None:
        return None
    vec = np.zeros(n_pnodes, dtype=np.int64)
    errors = []
    for key, mib in body.free_mib.items():
        if not key.isdigit() or int(key) >= n_pnodes:
            errors.append(
                {"loc": ["body", "free_mib", key], "msg": f"not a pnode index 0..{n_pnodes - 1}"}
            )
            continue
        vec[int(key)] = mib
    if errors:
        raise InvalidInput("free_mib names pnodes the host does not have", errors=errors)
    return vec


def _input(
    state: HostAccounting,
    body: SqueezeRequest,
    settings: Settings,
    now: datetime,
    held: set[str],
) -> SqueezeInput:
    """The engine's arrays; domains in `held` (flagged by this very request) count as inactive."""
    doms = state.domains
    arrays = state.arrays()
    actual = [actual_total(d) for d in doms]
    active = [d.id not in held and is_active(d, now, settings) for d in doms]
    return SqueezeInput(
        backing_mib=arrays.backing_mib,
        size_mib=arrays.size_mib,
        home=arrays.home,
        dynamic_min_mib=np.array([d.dynamic_min_mib for d in doms], dtype=np.int64),
        dynamic_max_mib=np.array([d.dynamic_max_mib for d in doms], dtype=np.int64),
        target_mib=np.array([d.target_mib for d in doms], dtype=np.int64),
        actual_mib=np.array(
            [d.target_mib if a is None else a for d, a in zip(doms, actual, strict=True)],
            dtype=np.int64,
        ),
        active=np.array(active, dtype=bool),
        capacity_mib=state.capacity_mib,
        claimed_mib=state.claimed_mib,
        free_mib=_request_vector(body, state.n_pnodes),
        total_free_mib=body.total_free_mib,
        balance=body.balance,
    )


def squeeze_host(
    session: Session,
    host_id: str,
    body: SqueezeRequest,
    actor: str,
    settings: Settings,
    now: datetime,
) -> SqueezeResult:
    state = load_host_accounting(session, host_id, lock=not body.dry_run, now=now)
    if state is None:
        raise NotFound(f"no host with id {host_id}")
    result, changes = plan_squeeze(state, body, settings, actor=actor, now=now)
    if body.dry_run:
        discard(session)  # nothing is written: the unit rolls back
    else:
        apply(session, state, changes, now=now)
    return result


def plan_squeeze(
    state: HostAccounting,
    body: SqueezeRequest,
    settings: Settings,
    *,
    actor: str,
    now: datetime,
) -> tuple[SqueezeResult, ChangeSet]:
    """The squeeze of the loaded host and its change set (pure): drivers stalled past the
    limit are flagged first and held at their actual size."""
    sweep = stalled(state.domains, now, settings, actor=actor)
    held = {d.id for d, _ in sweep.status}
    inp = _input(state, body, settings, now, held)
    try:
        plan = squeeze(inp)
    except InfeasibleError as exc:
        raise Infeasible(
            f"host {state.host.name}: {exc.reason}", max_feasible_mib=exc.max_feasible_mib
        ) from None
    result = _result(state, inp, plan, body.dry_run)
    return result, sweep.merge(_changes(state, plan, actor, body, now))


def _result(
    state: HostAccounting, inp: SqueezeInput, plan: SqueezePlan, dry_run: bool
) -> SqueezeResult:
    doms = state.domains
    out = []
    for i, d in enumerate(doms):
        k = len(d.vnodes)
        new, old = int(plan.target_mib[i]), d.target_mib
        phase: Phase = "decrease" if new < old else "increase" if new > old else "unchanged"
        if not inp.active[i]:
            phase = "held"  # counted at its actual size; its target is not changed
        out.append(
            SqueezedDomain(
                domain_id=d.id,
                target_mib=new,
                previous_target_mib=old,
                vnode_targets_mib=[int(t) for t in plan.vnode_target_mib[i, :k].tolist()],
                phase=phase,
                held=not bool(inp.active[i]),
            )
        )
    return SqueezeResult(
        host_id=state.host.id,
        dry_run=dry_run,
        gamma=float(plan.gamma),
        domains=out,
        order=[doms[i].id for i in plan.order],
        free_mib_after=[int(f) for f in plan.free_mib_after.tolist()],
    )


def _changes(
    state: HostAccounting,
    plan: SqueezePlan,
    actor: str,
    body: SqueezeRequest,
    now: datetime,
) -> ChangeSet:
    """New targets, backing and pool steps for the domains whose target moves, in the plan's
    order (decreases first), and one event for the host."""
    changes = ChangeSet()
    moved: list[dict[str, Any]] = []
    for i in plan.order:
        d = state.domains[i]
        new = int(plan.target_mib[i])
        if new == d.target_mib:
            continue
        k = len(d.vnodes)
        moved.append({"domain_id": d.id, "from": d.target_mib, "to": new})
        changes.backing[d.id] = plan.backing_mib[i, :k].copy()
        changes.targets.append(NewTarget(domain=d, target_mib=new, set_at=now))
        changes.pool_steps[d.id] = pool_change_rows(
            d.id,
            state.host.id,
            topology_of(d),
            state.backing[d.id].sum(axis=1),
            plan.vnode_target_mib[i, :k],
            [vn.home_pnode or 0 for vn in d.vnodes],
            now,
        )
    after = {
        "request": body.model_dump(exclude={"dry_run"}),
        "gamma": float(plan.gamma),
        "changed": moved,
    }
    changes.events.append(event(actor, "host.squeezed", "host", state.host.id, after=after))
    return changes


def derive_template(session: Session, actor: str) -> WorstCaseTemplateOut:
    shapes = host_shapes(session)  # one row per distinct topology: ties go to the first host
    if not shapes.hosts:
        raise Infeasible("register at least one host before deriving the template")
    try:
        tpl = worst_case_template(shapes.distances)
    except TopologyError as exc:
        raise InvalidInput(
            "the hosts' topologies cannot give a guest template",
            errors=issues_to_errors(exc.issues, prefix=()),
        ) from None
    dist = tpl.distances.tolist()
    out = WorstCaseTemplateOut(
        vnode_count=tpl.vnodes,
        vnodes=[TemplateVnode(index=i, distances=row) for i, row in enumerate(dist)],
        distances=dist,
        classes=list(tpl.classes),
        source_host_id=shapes.first_host_ids[tpl.source_host_index],
        hosts_considered=shapes.hosts,
    )
    cluster = get_cluster(session, lock=True)
    before = cluster.worst_case_template
    cluster.worst_case_template = out.model_dump(mode="json")
    record_event(
        session,
        actor,
        "cluster.template_derived",
        "cluster",
        None,
        before=before,
        after=cluster.worst_case_template,
    )
    return out
