"""ORM rows + backing arrays -> toolstack response models: the one place rows become responses,
so a field is spelled once whichever route (or core operation) returns it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from service.core.placement import Ranked
from service.core.rows import DomainRow
from service.db.accounting import HostAccounting
from service.db.models import Host, Step
from service.engine.topology import PAGES_PER_MIB
from service.schemas.agent import StepOut
from service.schemas.domains import (
    DomainOut,
    HostAgentState,
    MemoryOut,
    MemRange,
    PlacementOut,
    VnodeOut,
)
from service.schemas.hosts import (
    Accounting,
    DomainBacking,
    Evacuation,
    HostAgent,
    HostOut,
    MemoryTotals,
    PnodeAccounting,
    PnodeOut,
)

I64 = NDArray[np.int64]
# Built once: the union, evaluated in `domain_out`'s `cast`, cost a typing call per response.
_HOST_AGENT = HostAgentState | None


def memranges(sizes_mib: list[int]) -> list[tuple[int, int]]:
    """Vnodes laid out in order from PFN 0 (4 KiB pages), as in the guest's SRAT."""
    out, start = [], 0
    for size in sizes_mib:
        end = start + size * PAGES_PER_MIB
        out.append((start, end))
        start = end
    return out


def domain_out(
    domain: DomainRow, backing: I64 | None, n_pnodes: int, host_agent: str | None = None
) -> DomainOut:
    """`host_agent`: its host's agent judgement (`Host.agent`)."""
    k = len(domain.vnodes)
    x = backing if backing is not None else np.zeros((k, n_pnodes), dtype=np.int64)
    ranges = memranges([vn.size_mib for vn in domain.vnodes])
    return DomainOut(
        id=domain.id,
        name=domain.name,
        host_id=domain.host_id,
        state=domain.state,
        memory=MemoryOut(
            static_max_mib=domain.static_max_mib,
            dynamic_min_mib=domain.dynamic_min_mib,
            dynamic_max_mib=domain.dynamic_max_mib,
            target_mib=domain.target_mib,
        ),
        vnodes=[
            VnodeOut(
                index=vn.index,
                size_mib=vn.size_mib,
                vcpus=vn.vcpus,
                distances=domain.distances[vn.index],
                target_mib=vn.target_mib,
                actual_mib=vn.actual_mib,
                guest_visible_mib=vn.guest_visible_mib,
                home_pnode=vn.home_pnode,
                backing_mib=[int(m) for m in x[vn.index].tolist()],
                memranges=[MemRange(start_pfn=ranges[vn.index][0], end_pfn=ranges[vn.index][1])],
                plugged_blocks=-(-vn.target_mib // domain.block_mib),
            )
            for vn in domain.vnodes
        ],
        policy=domain.policy,
        block_mib=domain.block_mib,
        uncooperative=domain.uncooperative,
        host_agent=cast(_HOST_AGENT, host_agent),
        step_failure=domain.step_failure,
        external_id=domain.external_id,
        labels=domain.labels or {},
        version=domain.version,
        created_at=domain.created_at,
    )


def accounting_out(state: HostAccounting) -> Accounting:
    """A host's accounting as stored, with each domain's charges, so anyone can check from the
    API alone that allocated_mib equals Σ charged_mib on every pnode. Claims are those live at
    the state's clock: a lapsed lease stops counting before the sweeper deletes it."""
    charges = state.charges()
    claimed = state.claimed_mib.tolist()
    pnodes = [
        PnodeAccounting(
            index=p.index,
            capacity_mib=p.capacity_mib,
            allocated_mib=p.allocated_mib,
            claimed_mib=int(claimed[p.index]),
            free_mib=p.capacity_mib - p.allocated_mib - int(claimed[p.index]),
            observed_free_mib=p.observed_free_mib,
        )
        for p in state.host.pnodes
    ]
    domains = []
    for d in state.domains:
        backing, charged = state.backing[d.id], charges[d.id]
        domains.append(
            DomainBacking(
                domain_id=d.id,
                backing_mib=backing.tolist(),
                charged_mib=charged.tolist(),
                held_over_target_mib=int(charged.sum() - backing.sum()),
            )
        )
    return Accounting(host_id=state.host.id, pnodes=pnodes, domains=domains)


def placement_out(r: Ranked) -> PlacementOut:
    p = r.placement
    return PlacementOut(
        host_id=r.host_id,
        host_name=r.host_name,
        feasible=p.feasible,
        score=p.score if p.feasible else None,
        distortion=p.distortion if p.feasible else None,
        mapping=[int(m) for m in p.mapping.tolist()],
        spread=p.spread,
        reason=p.reason,
        max_feasible_mib=r.max_feasible_mib,
        free_mib=r.free_mib,
    )


def host_out(
    host: Host,
    evacuation: tuple[int, int] | None = None,
    lease_expires_at: datetime | None = None,
) -> HostOut:
    """`evacuation`: (domains left, migrations in flight), for a host being evacuated;
    `lease_expires_at`: its agent's lease (None: never taken)."""
    pnodes = [
        PnodeOut(
            index=p.index,
            memory_mib=p.memory_mib,
            reserved_mib=p.reserved_mib,
            capacity_mib=p.capacity_mib,
            cpus=p.cpus,
            allocated_mib=p.allocated_mib,
            claimed_mib=p.claimed_mib,
            free_mib=p.capacity_mib - p.allocated_mib - p.claimed_mib,
        )
        for p in host.pnodes
    ]
    evac = None
    if host.evacuation_requested_at is not None:
        left, moving = evacuation or (0, 0)
        evac = Evacuation(
            requested_at=host.evacuation_requested_at,
            domains_remaining=left,
            migrations_in_flight=moving,
            done=left == 0,
        )
    return HostOut(
        id=host.id,
        name=host.name,
        state=host.state,
        pnodes=pnodes,
        memory=MemoryTotals(
            capacity_mib=sum(p.capacity_mib for p in pnodes),
            allocated_mib=sum(p.allocated_mib for p in pnodes),
            claimed_mib=sum(p.claimed_mib for p in pnodes),
            free_mib=sum(p.free_mib for p in pnodes),
        ),
        distances=host.distances,
        drift_flagged=host.drift_flagged,
        external_id=host.external_id,
        labels=host.labels or {},
        evacuation=evac,
        agent=HostAgent(
            connected=None if host.agent is None else host.agent == "connected",
            lease_expires_at=lease_expires_at,
            last_report_at=host.observed_at,
        ),
        version=host.version,
        created_at=host.created_at,
    )


def host_summary(out: HostOut) -> dict[str, Any]:
    """What the audit log keeps of a host when it is created or deleted."""
    return {
        "name": out.name,
        "state": out.state,
        "pnodes": len(out.pnodes),
        "capacity_mib": [p.capacity_mib for p in out.pnodes],
    }


def step_out(step: Step) -> StepOut:
    return StepOut.model_validate(step, from_attributes=True)
