"""A migration's plan: both hosts' states read (locked when writing), the engine's plan for the
domain, and the plan as the API shows it."""

from __future__ import annotations

from datetime import datetime

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.core.domains import topology_of
from service.db.accounting import HostAccounting
from service.db.loaders import load_host_accounting
from service.db.locks import lock_hosts
from service.db.models import Domain
from service.engine.migration import MigrationPlan, plan_migration
from service.errors import Conflict, InvalidInput, NotFound
from service.schemas.migrations import (
    MigrationRequest,
    PlanOut,
    PlanStepOut,
)
from service.vocabulary import (
    DomainState,
)

I64 = NDArray[np.int64]


def _policy(domain: Domain, body: MigrationRequest) -> str:
    if body.policy is not None:
        return body.policy
    return "faithful" if domain.policy == "explicit" else domain.policy


def host_states(
    session: Session, src_id: str, dst_id: str, *, lock: bool, now: datetime | None = None
) -> tuple[HostAccounting, HostAccounting]:
    """Both hosts' states; when writing, both locked in id order (one global lock order)."""
    if lock:
        lock_hosts(session, [src_id, dst_id])
    # Locked loads again when writing: they lock the pnode rows too and refresh what the session
    # already held (a sweep earlier in this request read the same rows).
    src = load_host_accounting(session, src_id, lock=lock, now=now)
    dst = load_host_accounting(session, dst_id, lock=lock, now=now)
    if src is None or dst is None:
        raise NotFound("the source or destination host no longer exists")
    return src, dst


def compute_plan(
    session: Session, body: MigrationRequest, *, lock: bool, now: datetime | None = None
) -> tuple[Domain, HostAccounting, HostAccounting, MigrationPlan]:
    # Only the host id is read before the hosts are locked: a Domain object loaded here would
    # stay in the identity map with a pre-lock version and fail its update as stale (412).
    row = session.execute(
        select(Domain.id, Domain.host_id).where(Domain.id == body.domain_id)
    ).first()
    if row is None:
        raise NotFound(f"no domain with id {body.domain_id}")
    if row.host_id is None:
        raise Conflict("the domain has no host to migrate from")
    if row.host_id == body.destination_host_id:
        raise InvalidInput(
            "the domain already runs on that host; use POST /v1/hosts/{id}/rebalance",
            errors=[{"loc": ["body", "destination_host_id"], "msg": "same as the source"}],
        )
    src, dst = host_states(session, row.host_id, body.destination_host_id, lock=lock, now=now)
    found = src.domain(row.id)
    if found is None:
        raise Conflict("the domain moved or was deleted while this request ran; retry")
    domain = found
    if lock and domain.state != DomainState.RUNNING:
        raise Conflict(f"the domain is {domain.state}; one migration at a time")
    if dst.host.state != "active":
        raise Conflict(f"destination host {dst.host.name} is {dst.host.state}")
    topo = topology_of(domain)
    plan = plan_migration(
        size_mib=topo.size_mib,
        vcpu_count=topo.vcpu_count(),
        vdist=topo.distances,
        block_mib=topo.block_mib,
        dynamic_min_mib=domain.dynamic_min_mib,
        dynamic_max_mib=domain.dynamic_max_mib,
        backing_src=src.backing[domain.id],
        home_src=np.array([vn.home_pnode or 0 for vn in domain.vnodes], dtype=np.int64),
        pdist_src=src.pdist,
        free_dst_mib=np.maximum(dst.headroom_mib(), 0),
        cpus_dst=dst.cpus,
        pdist_dst=dst.pdist,
        load_vcpus_dst=dst.load_vcpus(),
        policy=_policy(domain, body),
        strategy=body.strategy,
    )
    return domain, src, dst, plan


def plan_out(
    domain: Domain, src: HostAccounting, dst: HostAccounting, plan: MigrationPlan
) -> PlanOut:
    host_of = {"source": src.host.id, "destination": dst.host.id}
    return PlanOut(
        feasible=plan.feasible,
        reason=plan.reason,
        strategy=plan.strategy,
        domain_id=domain.id,
        source_host_id=src.host.id,
        destination_host_id=dst.host.id,
        mapping_before=plan.mapping_before.tolist(),
        mapping_after=plan.mapping_after.tolist(),
        target_before_mib=plan.target_before_mib,
        target_after_mib=plan.target_after_mib,
        claims_mib=plan.claims_mib.tolist(),
        steps=[
            PlanStepOut(
                seq=s.seq,
                phase=s.phase,
                op=s.op,
                host=s.host,
                host_id=host_of[s.host],
                vnode=s.vnode,
                pnode=s.pnode,
                mib=s.mib,
                pfn_ranges=[list(r) for r in s.pfn_ranges],
                target_mib=s.target_mib,
            )
            for s in plan.steps
        ],
        moved_mib=plan.moved_mib,
        distortion_before=plan.distortion_before,
        distortion_after=plan.distortion_after,
        remote_fraction_before=plan.remote_fraction_before,
        remote_fraction_after=plan.remote_fraction_after,
        backing_before=plan.backing_before.tolist(),
        backing_after=plan.backing_after.tolist(),
    )


def grow_flags(plan: MigrationPlan) -> list[bool | None]:
    """Each pool step's direction, from the pool level before it (replayed per vnode)."""
    level = {v: int(t) for v, t in enumerate(plan.backing_before.sum(axis=1).tolist())}
    out: list[bool | None] = []
    for s in plan.steps:
        if s.vnode is None or s.target_mib is None or s.op not in ("balloon", "plug", "unplug"):
            out.append(None)
            continue
        out.append(s.target_mib > level[s.vnode])
        level[s.vnode] = s.target_mib
    return out
