"""Domains: create and place, retarget, delete.

Every write locks the host row first (PostgreSQL `FOR UPDATE`; SQLite holds the write lock from
`BEGIN IMMEDIATE`), loads the host's accounting in a fixed number of queries, decides with a pure
function (`retarget`) or the engine, and hands the change set to `service.db.apply.apply`, which
writes it with the per-pnode counters in the same transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Integer, and_, bindparam, case, exists, func, literal, select
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from service.core.balloon import held_levels, pool_change_rows
from service.core.bookkeeping import set_bookkeeping
from service.core.rows import DomainRow, ListedDomain, ListedVnode
from service.db.accounting import HostAccounting
from service.db.apply import apply
from service.db.changes import ChangeSet, NewTarget, event
from service.db.cluster import get_cluster, load_cluster
from service.db.leases import AWAY, LOST
from service.db.loaders import LOCK_DOMAIN_HOST, load_domain_state, load_host_accounting
from service.db.models import Backing, Domain, Host, Pnode, Vnode
from service.db.steps import set_step_failure
from service.db.tables import BACKING, DOMAINS, HOSTS, PNODES, VNODES
from service.db.tokens import revoke_tokens
from service.engine.distribute import apportion, distribute
from service.engine.errors import InfeasibleError, Issue, TopologyError
from service.engine.floors import vnode_floor_mib
from service.engine.placement import HostArrays, Placement, place, rank_cluster
from service.engine.topology import VirtualTopology, virtual_from_lists
from service.errors import (
    Conflict,
    Infeasible,
    InvalidInput,
    NotFound,
    WouldBreakFailoverPlan,
    issues_to_errors,
)
from service.schemas.domains import DomainCreate, DomainPatch, DomainShape, TargetPut
from service.vocabulary import Policy

I64 = NDArray[np.int64]
MAX_HOST_ATTEMPTS = 3
# Built once: executing a prebuilt statement reuses its memoized cache key and compiled form.
_DOMAIN_WITH_VNODES = (
    select(Domain).where(Domain.id == bindparam("b_domain")).options(joinedload(Domain.vnodes))
)


@dataclass(frozen=True)
class Spec:
    """A validated virtual topology and memory for a new domain."""

    topology: VirtualTopology
    vcpus: list[list[int]]
    distances: list[list[int]]
    dynamic_min_mib: int
    dynamic_max_mib: int
    target_mib: int
    from_template: bool


def _even_lists(body: DomainShape, k: int, block: int) -> tuple[list[int], list[list[int]]]:
    """k vnodes of equal size, the vCPUs spread evenly (template and vnode_count forms)."""
    n = body.vcpus or 0
    if n < k:
        raise InvalidInput(
            f"{k} vnodes need at least one vCPU each",
            errors=[{"loc": ["body", "vcpus"], "msg": f"must be at least {k}"}],
        )
    counts = [n // k + (1 if i < n % k else 0) for i in range(k)]
    starts = np.cumsum([0, *counts[:-1]]).tolist()
    vcpus = [list(range(s, s + c)) for s, c in zip(starts, counts, strict=True)]
    size = body.vnode_size_mib
    if size is None:
        per = -(-body.memory.dynamic_max_mib // k)
        size = max(block, -(-per // block) * block)
    return [size] * k, vcpus


def _template_distances(template: dict[str, Any] | None) -> list[list[int]]:
    if template is None:
        raise Conflict(
            "the cluster has no worst-case template yet; POST /v1/cluster/worst-case-template"
        )
    distances: list[list[int]] = template["distances"]
    return distances


def shorthand_distances(k: int, host_distances: list[list[int]] | None) -> list[list[int]]:
    """The virtual SLIT of `vnode_count` vnodes: the placed host's own distances between the
    pnodes the vnodes would spread over (vnode v on pnode v*n/k) when k <= n, else 10/20."""
    n = len(host_distances) if host_distances is not None else 0
    if host_distances is None or k > n:
        return [[10 if u == v else 20 for v in range(k)] for u in range(k)]
    homes = [v * n // k for v in range(k)]
    return [[host_distances[homes[u]][homes[v]] for v in range(k)] for u in range(k)]


def _vnode_loc(issue: Issue) -> Issue:
    """The engine locates distance errors in the k x k matrix; the request has one row per vnode."""
    if issue.loc[:1] == ("distances",) and len(issue.loc) > 1:
        return Issue(loc=("vnodes", issue.loc[1], "distances", *issue.loc[2:]), msg=issue.msg)
    return issue


def build_spec(
    body: DomainShape,
    cluster_block: int,
    template: dict[str, Any] | None,
    host_distances: list[list[int]] | None = None,
) -> Spec:
    block = body.block_mib or cluster_block
    if body.vnodes is not None:
        sizes = [v.size_mib for v in body.vnodes]
        vcpus = [v.vcpus for v in body.vnodes]
        distances = [v.distances for v in body.vnodes]
    elif body.template is not None:
        distances = _template_distances(template)
        sizes, vcpus = _even_lists(body, len(distances), block)
    else:
        k = body.vnode_count or 1
        distances = shorthand_distances(k, host_distances)
        sizes, vcpus = _even_lists(body, k, block)
    try:
        topo = virtual_from_lists(size_mib=sizes, vcpus=vcpus, distances=distances, block_mib=block)
    except TopologyError as exc:
        issues = exc.issues if body.vnodes is None else tuple(map(_vnode_loc, exc.issues))
        raise InvalidInput(
            "the virtual NUMA topology is not valid", errors=issues_to_errors(issues)
        ) from None
    mem = body.memory
    static_max = topo.static_max_mib
    errors: list[dict[str, Any]] = []
    if mem.dynamic_max_mib > static_max:
        errors.append(
            {
                "loc": ["body", "memory", "dynamic_max_mib"],
                "msg": f"must not exceed static max {static_max} (the sum of vnode sizes)",
            }
        )
    if not mem.dynamic_min_mib <= mem.target_mib <= mem.dynamic_max_mib:
        errors.append(
            {
                "loc": ["body", "memory", "target_mib"],
                "msg": f"must lie in [dynamic_min_mib, dynamic_max_mib] = "
                f"[{mem.dynamic_min_mib}, {mem.dynamic_max_mib}]",
            }
        )
    if body.vnode_targets_mib is not None:
        targets = body.vnode_targets_mib
        if len(targets) != topo.n_vnodes:
            errors.append(
                {
                    "loc": ["body", "vnode_targets_mib"],
                    "msg": f"needs one target per vnode ({topo.n_vnodes})",
                }
            )
        elif sum(targets) != mem.target_mib:
            errors.append(
                {"loc": ["body", "vnode_targets_mib"], "msg": "must sum to memory.target_mib"}
            )
        else:
            errors += [
                {"loc": ["body", "vnode_targets_mib", v], "msg": f"exceeds vnode size {s}"}
                for v, (t, s) in enumerate(zip(targets, sizes, strict=True))
                if t > s
            ]
            floors = vnode_floor_mib(
                sizes,
                dynamic_min_mib=mem.dynamic_min_mib,
                static_max_mib=sum(sizes),
                block_mib=topo.block_mib,
            )
            errors += _below_floor(targets, floors.tolist())
    if errors:
        raise InvalidInput("the domain's memory settings are not valid", errors=errors)
    return Spec(
        topology=topo,
        vcpus=vcpus,
        distances=distances,
        dynamic_min_mib=mem.dynamic_min_mib,
        dynamic_max_mib=mem.dynamic_max_mib,
        target_mib=mem.target_mib,
        from_template=body.template is not None,
    )


def initial_demand(spec: Spec, explicit: list[int] | None) -> I64:
    """Per-vnode MiB to place: the explicit targets, else the target in proportion to size."""
    if explicit is not None:
        return np.asarray(explicit, dtype=np.int64)
    out: I64 = apportion(
        total_mib=np.array([spec.target_mib], dtype=np.int64), weights=spec.topology.size_mib[None]
    )[0]
    return out


def _place_on(
    state: HostAccounting, spec: Spec, demand: I64, excluding: str | None = None
) -> Placement:
    return place(
        demand_mib=demand,
        vcpu_count=spec.topology.vcpu_count(),
        vdist=spec.topology.distances,
        free_mib=np.maximum(state.headroom_mib(excluding), 0),
        cpus=state.cpus,
        pdist=state.pdist,
        load_vcpus=state.load_vcpus(excluding),
    )


def _distribute(
    state: HostAccounting,
    domain_id: str | None,
    topo: VirtualTopology,
    target: int,
    home: I64,
    policy: str,
    explicit: list[int] | None,
    current: I64 | None,
) -> I64:
    return distribute(
        target_mib=target,
        size_mib=topo.size_mib,
        headroom_mib=state.headroom_mib(domain_id),
        home=home,
        vdist=topo.distances,
        pdist=state.pdist,
        policy=Policy(policy),
        current_mib=current,
        explicit_targets_mib=None if explicit is None else np.asarray(explicit, np.int64),
        block_mib=topo.block_mib,
        vcpu_count=topo.vcpu_count(),
    )


def _infeasible(exc: InfeasibleError, where: str) -> Infeasible:
    return Infeasible(f"{where}: {exc.reason}", max_feasible_mib=exc.max_feasible_mib)


def host_distances_of(session: Session, body: DomainShape) -> list[list[int]] | None:
    """The pinned host's SLIT, which the vnode_count shorthand copies (None otherwise)."""
    if body.vnode_count is None or body.host_id is None:
        return None
    found: list[list[int]] | None = session.scalar(
        select(Host.distances).where(Host.id == body.host_id)
    )
    if found is None:
        raise NotFound(f"no host with id {body.host_id}")
    return found


Advise = Callable[[Session, Spec, I64, str, str | None], dict[str, Any]]


def create_domain(
    session: Session,
    body: DomainCreate,
    actor: str,
    advise: Advise | None,
    now: datetime,
    admit: Callable[[Domain], None] | None = None,
) -> tuple[Domain, HostAccounting, I64]:
    """`advise` builds the details of the 409 when no host takes an unpinned domain (see
    `service.core.placement.admission_advice`: best hosts, their maxima, a squeeze that helps).
    `admit` may refuse the domain where it was placed (failover protection): an unpinned
    domain then tries the next host, and the first refusal is raised when none takes it."""
    cluster = get_cluster(session)
    spec = build_spec(
        body, cluster.block_mib, cluster.worst_case_template, host_distances_of(session, body)
    )
    if session.scalar(select(exists().where(Domain.name == body.name))):
        raise Conflict(f"a domain named {body.name!r} already exists")
    if body.external_id is not None and session.scalar(
        select(exists().where(Domain.external_id == body.external_id))
    ):
        raise Conflict(f"a domain with external_id {body.external_id!r} already exists")
    demand = initial_demand(spec, body.vnode_targets_mib)

    if body.host_id is not None:
        candidates = [body.host_id]
    else:
        candidates = _rank_candidates(session, spec, demand)
    reasons: list[str] = []
    refused: WouldBreakFailoverPlan | None = None
    for host_id in candidates[:MAX_HOST_ATTEMPTS]:
        attempt = session.begin_nested()
        outcome = _try_host(session, host_id, spec, body, demand, actor, now)
        if not isinstance(outcome, str):
            try:
                if admit is not None:
                    admit(outcome[0])
            except WouldBreakFailoverPlan as exc:
                if body.host_id is not None:
                    raise
                refused = refused or exc
                outcome = f"host {outcome[1].host.name}: it would break the failover plan"
            else:
                attempt.commit()
                return outcome
        reasons.append(outcome)
        # Nothing was written: roll back to the savepoint, which releases this host's row lock
        # before the next one is taken (two creates trying hosts in different orders cannot
        # deadlock) but keeps what the unit holds from before, the Idempotency-Key's advisory
        # lock among them (a concurrent retry of this create must wait for our answer).
        attempt.rollback()
    if refused is not None:
        raise refused
    if advise is not None and (candidates or body.host_id is None):
        raise Infeasible(
            ("no active host can hold this domain" if body.host_id is None else "")
            + (": " if reasons and body.host_id is None else "")
            + "; ".join(reasons),
            **advise(session, spec, demand, body.policy, body.host_id),
        )
    if not candidates:
        raise Infeasible("no active host can hold this domain", max_feasible_mib=0)
    raise Infeasible("; ".join(reasons) or "no host can hold this domain")


def _try_host(
    session: Session,
    host_id: str,
    spec: Spec,
    body: DomainCreate,
    demand: I64,
    actor: str,
    now: datetime,
) -> tuple[Domain, HostAccounting, I64] | str:
    """Create the domain on this host, or say why not (409 at once when the host was pinned)."""
    state = load_host_accounting(session, host_id, lock=True, now=now)
    if state is None:
        raise NotFound(f"no host with id {host_id}")
    if state.host.state != "active":
        return f"host {state.host.name} is {state.host.state}"
    if state.host.agent == LOST:
        return f"host {state.host.name}'s agent is lost (its lease lapsed): {AWAY}"
    placement = _place_on(state, spec, demand)
    if not placement.feasible:
        return f"host {state.host.name}: {placement.reason}"
    try:
        x = _distribute(
            state,
            None,
            spec.topology,
            spec.target_mib,
            placement.mapping,
            body.policy,
            body.vnode_targets_mib,
            None,
        )
    except InfeasibleError as exc:
        if body.host_id is not None:
            raise _infeasible(exc, f"host {state.host.name}") from None
        return f"host {state.host.name}: {exc.reason}"
    domain = _persist_new(session, state, spec, body, placement.mapping, x, actor, now)
    return domain, state, x


def _rank_candidates(session: Session, spec: Spec, demand: I64) -> list[str]:
    view = load_cluster(session)
    ranking = rank_cluster(
        demand_mib=demand,
        vcpu_count=spec.topology.vcpu_count(),
        vdist=spec.topology.distances,
        cluster=view.arrays,
        limit=MAX_HOST_ATTEMPTS,
    )
    return [view.ids[i] for i in ranking.order.tolist() if ranking.feasible[i]]


def _persist_new(
    session: Session,
    state: HostAccounting,
    spec: Spec,
    body: DomainCreate,
    mapping: I64,
    x: I64,
    actor: str,
    now: datetime,
) -> Domain:
    targets = x.sum(axis=1)
    domain = Domain(
        name=body.name,
        host_id=state.host.id,
        state="running",
        policy=body.policy,
        block_mib=spec.topology.block_mib,
        static_max_mib=spec.topology.static_max_mib,
        dynamic_min_mib=spec.dynamic_min_mib,
        dynamic_max_mib=spec.dynamic_max_mib,
        target_mib=spec.target_mib,
        distances=spec.distances,
        from_template=spec.from_template,
        target_set_at=now,
        created_at=now,
        updated_at=now,
        external_id=body.external_id,
        labels=body.labels,
    )
    domain.vnodes = [
        Vnode(
            index=v,
            size_mib=int(spec.topology.size_mib[v]),
            vcpus=spec.vcpus[v],
            vcpu_count=len(spec.vcpus[v]),
            target_mib=int(targets[v]),
            home_pnode=int(mapping[v]),
        )
        for v in range(spec.topology.n_vnodes)
    ]
    session.add(domain)
    session.flush()
    state.domains.append(domain)
    created = event(
        actor,
        "domain.created",
        "domain",
        domain.id,
        after={
            "name": domain.name,
            "host_id": state.host.id,
            "target_mib": domain.target_mib,
            "vnode_targets_mib": targets.tolist(),
            "home_pnodes": mapping.tolist(),
        },
        at=now,
    )
    apply(session, state, ChangeSet(backing={domain.id: x}, events=[created]), now=now)
    return domain


def load_domain(session: Session, domain_id: str) -> Domain:
    """The domain with its vnodes, in one statement."""
    domain = session.scalars(_DOMAIN_WITH_VNODES, {"b_domain": domain_id}).unique().one_or_none()
    if domain is None:
        raise NotFound(f"no domain with id {domain_id}")
    return domain


_VIEW_FIELDS = [f for f in ListedDomain.__dataclass_fields__ if f != "vnodes"]
_VIEW_DOMAIN = [DOMAINS.c[f] for f in _VIEW_FIELDS]
_VIEW_VNODE = [VNODES.c[f] for f in ListedVnode.__dataclass_fields__]
_N_DOMAIN, _N_VNODE = len(_VIEW_DOMAIN), len(_VIEW_VNODE)
_HOST_PNODES = select(func.count()).where(PNODES.c.host_id == DOMAINS.c.host_id).scalar_subquery()
# The domain's columns on each of its backing cells' rows, with the cell's vnode, its pnode and
# MiB, the host's pnode count and agent judgement (a vnode without cells: one row, no cell; a
# domain without vnodes: one row, no vnode).
_VIEW_ROWS = (
    select(*_VIEW_DOMAIN, *_VIEW_VNODE, BACKING.c.pnode, BACKING.c.mib, _HOST_PNODES, HOSTS.c.agent)
    .select_from(
        DOMAINS.outerjoin(VNODES, VNODES.c.domain_id == DOMAINS.c.id)
        .outerjoin(
            BACKING,
            and_(BACKING.c.domain_id == DOMAINS.c.id, BACKING.c.vnode == VNODES.c.index),
        )
        .outerjoin(HOSTS, HOSTS.c.id == DOMAINS.c.host_id)
    )
    .order_by(VNODES.c.index)
)
_VIEW_BY_ID = _VIEW_ROWS.where(DOMAINS.c.id == bindparam("b_key"))
_VIEW_BY_NAME = _VIEW_ROWS.where(DOMAINS.c.name == bindparam("b_key"))


@dataclass(frozen=True)
class DomainView:
    """What a domain's view is built from: the domain and its vnodes as plain records, its
    backing (None without a host with pnodes), its host's pnode count and agent judgement."""

    domain: ListedDomain
    backing: I64 | None
    n_pnodes: int
    host_agent: str | None


def _view_rows(session: Session, by_name: bool, key: str) -> DomainView | None:
    """One statement, no ORM objects: what `backing_and_agents` says of the domain, with it."""
    rows = session.execute(_VIEW_BY_NAME if by_name else _VIEW_BY_ID, {"b_key": key}).all()
    if not rows:
        return None
    first = rows[0]
    fields = dict(zip(_VIEW_FIELDS, first[:_N_DOMAIN], strict=True))
    vnodes: dict[int, ListedVnode] = {}
    for r in rows:
        index = r[_N_DOMAIN]
        if index is not None and index not in vnodes:
            vnodes[index] = ListedVnode(*r[_N_DOMAIN : _N_DOMAIN + _N_VNODE])
    domain = ListedDomain(**fields, vnodes=list(vnodes.values()))
    n_pnodes, agent = first[-2], first[-1]
    if domain.host_id is None or not n_pnodes:
        return DomainView(domain=domain, backing=None, n_pnodes=0, host_agent=None)
    x = np.zeros((len(domain.vnodes), n_pnodes), dtype=np.int64)
    for r in rows:
        pnode, mib = r[_N_DOMAIN + _N_VNODE], r[_N_DOMAIN + _N_VNODE + 1]
        if pnode is not None:
            x[r[_N_DOMAIN], pnode] = mib
    judged = agent if agent in _AGENT_CODES.values() else None
    return DomainView(domain=domain, backing=x, n_pnodes=n_pnodes, host_agent=judged)


def view_domain(session: Session, domain_id: str) -> DomainView:
    """The domain read for its view, in one statement."""
    found = _view_rows(session, False, domain_id)
    if found is None:
        raise NotFound(f"no domain with id {domain_id}")
    return found


def view_domain_by_name(session: Session, name: str) -> DomainView:
    found = _view_rows(session, True, name)
    if found is None:
        raise NotFound(f"no domain named {name!r}")
    return found


def lock_domain_host(
    session: Session, domain_id: str, now: datetime
) -> tuple[Domain, HostAccounting]:
    """Lock the domain's host and load its state; the domain is then read under the lock.

    The state holds this domain as ORM rows and the host's other domains as per-pnode sums
    (the locked counters less this domain's charges)."""
    domain, state, _ = _lock_domain_host(session, domain_id, now)
    return domain, state


def _lock_domain_host(
    session: Session, domain_id: str, now: datetime
) -> tuple[Domain, HostAccounting, bool]:
    """`lock_domain_host`, and whether failover protection was off under the lock."""
    # One statement finds and locks the host; the domain is re-read under the lock below.
    host = session.scalars(LOCK_DOMAIN_HOST, {"b_domain": domain_id}).unique().one_or_none()
    if host is None:
        if session.scalar(select(exists().where(Domain.id == domain_id))):
            raise Conflict("the domain has no host")
        raise NotFound(f"no domain with id {domain_id}")
    state, protection_off = load_domain_state(session, host, domain_id, now)
    domain = None if state is None else state.domain(domain_id)
    if state is None or domain is None:  # moved by a concurrent migration: the caller retries
        raise Conflict("the domain moved while this request ran; retry")
    return domain, state, protection_off


def set_target(
    session: Session,
    domain_id: str,
    body: TargetPut,
    actor: str,
    now: datetime,
    precondition: Callable[[int], None] = lambda _version: None,
    observe: Callable[[Domain], None] = lambda _domain: None,
) -> tuple[Domain, HostAccounting, I64, bool]:
    """Lock, decide (`retarget`), apply: on PostgreSQL three statements in all. `observe` sees
    the domain as it was, under the lock. The last value: whether failover protection was off
    when read under the lock (`failover.admit`'s `protection_off`)."""
    domain, state, protection_off = _lock_domain_host(session, domain_id, now)
    precondition(domain.version)
    observe(domain)
    apply(session, state, retarget(state, domain, body, actor=actor, now=now), now=now)
    if domain.step_failure is not None:  # a new change: its steps start afresh
        set_step_failure(session, [domain.id], None)
        set_committed_value(domain, "step_failure", None)
    return domain, state, state.backing[domain.id], protection_off


def retarget(
    state: HostAccounting, domain: Domain, body: TargetPut, *, actor: str, now: datetime
) -> ChangeSet:
    """The change set of a new target for a domain of the loaded host (pure: no I/O).

    The new backing comes from the engine's distribution; the pool changes the host agent and
    the guest carry out replace the domain's pending ones; the domain's version moves."""
    if domain.state != "running":
        raise Conflict(f"the domain is {domain.state}; its target cannot change now")
    policy = body.policy or domain.policy
    _check_target(domain, body, policy)
    topo = topology_of(domain)
    homes = [vn.home_pnode or 0 for vn in domain.vnodes]
    before = state.backing[domain.id]
    try:
        x = _distribute(
            state,
            domain.id,
            topo,
            body.target_mib,
            np.array(homes, dtype=np.int64),
            policy,
            body.vnode_targets_mib,
            before,
        )
    except InfeasibleError as exc:
        raise _infeasible(exc, f"host {state.host.name}") from None
    _check_floors(domain, x.sum(axis=1), policy)
    old = {"target_mib": domain.target_mib, "policy": domain.policy}
    new = {"target_mib": body.target_mib, "policy": policy}
    steps = pool_change_rows(
        domain.id,
        state.host.id,
        topo,
        held_levels(domain, before.sum(axis=1)),
        x.sum(axis=1),
        homes,
        now,
    )
    return ChangeSet(
        backing={domain.id: x},
        targets=[NewTarget(domain=domain, target_mib=body.target_mib, policy=policy, set_at=now)],
        pool_steps={domain.id: steps},
        events=[
            event(
                actor,
                "domain.target_changed",
                "domain",
                domain.id,
                before={**old, "vnode_targets_mib": before.sum(axis=1).tolist()},
                after={**new, "vnode_targets_mib": x.sum(axis=1).tolist()},
                at=now,
            )
        ],
    )


def _check_target(domain: Domain, body: TargetPut, policy: str) -> None:
    """The target within the dynamic range; per-vnode targets with, and only with, 'explicit'."""
    if not domain.dynamic_min_mib <= body.target_mib <= domain.dynamic_max_mib:
        raise InvalidInput(
            f"target_mib {body.target_mib} is outside the domain's dynamic range "
            f"[{domain.dynamic_min_mib}, {domain.dynamic_max_mib}]",
            errors=[{"loc": ["body", "target_mib"], "msg": "outside [dynamic_min, dynamic_max]"}],
        )
    explicit = body.vnode_targets_mib
    if (policy == "explicit") != (explicit is not None):
        raise InvalidInput(
            "vnode_targets_mib goes with, and only with, policy 'explicit'",
            errors=[{"loc": ["body", "vnode_targets_mib"], "msg": "policy mismatch"}],
        )
    if explicit is None:
        return
    sizes = [vn.size_mib for vn in domain.vnodes]
    k = len(sizes)
    if (
        len(explicit) != k
        or sum(explicit) != body.target_mib
        or any(t > s for t, s in zip(explicit, sizes, strict=True))
    ):
        raise InvalidInput(
            f"vnode_targets_mib needs {k} values within the vnode sizes summing to target_mib",
            errors=[{"loc": ["body", "vnode_targets_mib"], "msg": "invalid per-vnode targets"}],
        )
    below = _below_floor(explicit, floors_of(domain).tolist())
    if below:
        raise InvalidInput(
            "a vnode target below what the vnode always keeps (its share of dynamic_min_mib, "
            "in whole blocks: boot memory the hypervisor cannot unplug) can never be reached",
            errors=below,
        )


def floors_of(domain: Domain) -> I64:
    """Each vnode's floor (`engine.floors`): what a target or a plan never goes below."""
    return vnode_floor_mib(
        [vn.size_mib for vn in domain.vnodes],
        dynamic_min_mib=domain.dynamic_min_mib,
        static_max_mib=domain.static_max_mib,
        block_mib=domain.block_mib,
    )


def _below_floor(targets: Sequence[int], floors: Sequence[int]) -> list[dict[str, Any]]:
    return [
        {
            "loc": ["body", "vnode_targets_mib", v],
            "msg": f"below vnode {v}'s floor of {f} MiB (its share of dynamic_min_mib in whole "
            "blocks, which it always keeps)",
        }
        for v, (t, f) in enumerate(zip(targets, floors, strict=True))
        if t < f
    ]


def _check_floors(domain: Domain, levels: I64, policy: str) -> None:
    """A policy's distribution that leaves a vnode below its floor is refused, located at the
    target: that target, with this policy, asks a vnode for what it cannot give."""
    floors = floors_of(domain)
    low = [v for v in range(len(floors)) if int(levels[v]) < int(floors[v])]
    policy = str(getattr(policy, "value", policy))
    if low:
        where = ", ".join(f"vnode {v} at {int(levels[v])} < {int(floors[v])} MiB" for v in low)
        raise InvalidInput(
            f"policy {policy!r} would put {where}, below what the vnode always keeps; use "
            "policy 'proportional' or explicit vnode targets at or above the floors",
            errors=[{"loc": ["body", "target_mib"], "msg": f"policy {policy!r}: {where}"}],
        )


def topology_of(domain: Domain) -> VirtualTopology:
    """The domain's validated topology. It never changes in the guest's lifetime, and a
    `VirtualTopology` is immutable (frozen arrays), so one built from the same lists is reused:
    validating it again was about a fifth of a retarget's decision."""
    return _topology(
        tuple(vn.size_mib for vn in domain.vnodes),
        tuple(tuple(vn.vcpus) for vn in domain.vnodes),
        tuple(tuple(row) for row in domain.distances),
        domain.block_mib,
    )


@functools.lru_cache(maxsize=4096)
def _topology(
    sizes: tuple[int, ...],
    vcpus: tuple[tuple[int, ...], ...],
    distances: tuple[tuple[int, ...], ...],
    block_mib: int,
) -> VirtualTopology:
    return virtual_from_lists(
        size_mib=list(sizes),
        vcpus=[list(v) for v in vcpus],
        distances=[list(row) for row in distances],
        block_mib=block_mib,
    )


def patch_domain(
    session: Session,
    domain_id: str,
    body: DomainPatch,
    actor: str,
    now: datetime,
    precondition: Callable[[int], None] = lambda _version: None,
) -> Domain:
    """Labels and external id: the orchestrator's own bookkeeping (spec: the ETag moves)."""
    domain, _ = lock_domain_host(session, domain_id, now)
    precondition(domain.version)
    changed = set_bookkeeping(
        session,
        domain,
        body,
        kind="domain",
        actor=actor,
        now=now,
        external_id_taken=lambda value: bool(
            session.scalar(
                select(exists().where(Domain.external_id == value, Domain.id != domain.id))
            )
        ),
    )
    if changed:
        session.flush()
    return domain


def delete_domain(
    session: Session,
    domain_id: str,
    actor: str,
    now: datetime,
    precondition: Callable[[int], None] = lambda _version: None,
) -> None:
    domain, state = lock_domain_host(session, domain_id, now)
    precondition(domain.version)
    if domain.state != "running":
        raise Conflict(f"the domain is {domain.state}; abort its migration first")
    summary = {"name": domain.name, "host_id": domain.host_id, "target_mib": domain.target_mib}
    session.delete(domain)
    state.domains.remove(domain)
    state.backing.pop(domain.id, None)
    revoke_tokens(session, "guest", domain_id, now)
    deleted = event(actor, "domain.deleted", "domain", domain_id, before=summary, at=now)
    apply(session, state, ChangeSet(events=[deleted]), now=now)


def backing_of(session: Session, domains: Sequence[DomainRow]) -> dict[str, tuple[I64, int]]:
    """Backing matrices of some domains and their hosts' pnode counts, in one statement."""
    return backing_and_agents(session, domains)[0]


_AGENT_CODES = {1: "connected", 2: "lost"}


def backing_and_agents(
    session: Session, domains: Sequence[DomainRow]
) -> tuple[dict[str, tuple[I64, int]], dict[str, str]]:
    """Backing matrices of some domains and their hosts' pnode counts, and their hosts' agent
    judgements (`Host.agent`, for hosts judged), in one statement: the backing rows and, as
    (host id, -1, count, agent code) rows, the pnode counts and judgements."""
    host_ids = {d.host_id for d in domains if d.host_id is not None}
    if not host_ids:
        return {}, {}
    code = case((Host.agent == "connected", 1), (Host.agent == "lost", 2), else_=0)
    rows = session.execute(
        select(Backing.domain_id, Backing.vnode, Backing.pnode, Backing.mib)
        .where(Backing.domain_id.in_([d.id for d in domains if d.host_id is not None]))
        .union_all(
            select(Pnode.host_id, literal(-1, Integer()), func.count(), code)
            .join(Host, Host.id == Pnode.host_id)
            .where(Pnode.host_id.in_(host_ids))
            .group_by(Pnode.host_id, Host.agent)
        )
    ).all()
    n_pnodes = {owner: pnode for owner, vnode, pnode, _ in rows if vnode < 0}
    agents = {owner: _AGENT_CODES[c] for owner, vnode, _, c in rows if vnode < 0 and c}
    out = {
        d.id: (np.zeros((len(d.vnodes), n_pnodes[d.host_id]), dtype=np.int64), n_pnodes[d.host_id])
        for d in domains
        if d.host_id in n_pnodes
    }
    for owner, vnode, pnode, mib in rows:
        if vnode >= 0 and owner in out:
            out[owner][0][vnode, pnode] = mib
    return out, agents


__all__ = [
    "HostArrays",
    "create_domain",
    "delete_domain",
    "load_domain",
    "set_target",
]
