"""Recovery (issue 26): a failed host's protected domains restarted where the plan says.

`recover_host(session, host_id, now, reason, actor)` is the one entry point, for an operator's
`POST /v1/hosts/{id}/fail` and for an agent declared lost (issue 25's leases): call it in a unit
of work (`service.core.unit.write`); it commits nothing itself. It

1. takes the host out of service (`offline`; it may not receive restarts) and records
   `host.failed`;
2. aborts the migrations that involve the host and can be rolled back (their claims are
   released); a domain whose migration cannot be (it may already run elsewhere) is left out,
   with its reason;
3. plans the restarts of the host's protected domains (protection's label selector, or every
   domain when protection is off) with the failover engine: the scenario "this host fails",
   onto active hosts, each vnode on one pnode, **on free memory only** (no squeeze is started
   by a recovery: a domain that needs one is left stranded with its reason; squeeze a survivor
   and call again);
4. locks the destinations (in id order) and, for each restart that still fits under the lock,
   moves the domain: its backing released on the failed host, claimed on the new host at the
   plan's pnodes (vnode v: its target MiB on pnode `mapping[v]`), state `restarting`, and a
   pending `start` step (phase `restart`) for the destination's agent;
5. writes `hosts.recovery` (reason, when, the restarts and the stranded) and events
   `domain.restarting` per domain.

The destination's agent sees the restart as a step of its host (`GET /v1/agent/hosts/{id}/steps`:
`op: start`, `phase: restart`, the domain's id, `mib` its memory, `destination` this host and
each vnode's pnode, from `start_destinations`): it boots the guest with the domain's topology
bound there and acknowledges the step; the ack makes the domain `running` (`domain.restarted`),
a failed ack `failed` (its memory stays charged until the domain is deleted or restarted by the
operator).

Calling it again is safe: domains already moved are no longer on the host, so nothing is placed
twice; domains stranded the first time are tried again (after a squeeze, or when room appears).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.core import failover
from service.core import migrations as migration_core
from service.db.accounting import I64, HostAccounting
from service.db.apply import apply
from service.db.audit import record_event
from service.db.changes import ChangeSet, event, step_row
from service.db.failover import domain_states
from service.db.loaders import load_host_accounting
from service.db.models import Domain, Host, Migration, Step, Vnode
from service.engine.failover import plan_failover
from service.errors import Conflict, NotFound
from service.schemas.agent import StepDestination
from service.schemas.failover import RecoveryOut, RecoveryRestart, UnplacedOut
from service.vocabulary import ACTIVE_MIGRATION_STATES

RESTART_PHASE = "restart"
START_OP = "start"


def _abort_migrations(session: Session, host_id: str, actor: str, now: datetime) -> dict[str, str]:
    """Abort what can be of the migrations to or from the host; domain id -> why not."""
    rows = session.execute(
        select(Migration.id, Migration.domain_id).where(
            Migration.state.in_(list(ACTIVE_MIGRATION_STATES)),
            (Migration.source_host_id == host_id) | (Migration.destination_host_id == host_id),
        )
    ).all()
    left: dict[str, str] = {}
    for migration_id, domain_id in rows:
        try:
            with session.begin_nested():
                migration_core.abort(session, str(migration_id), actor, now)
        except Conflict as exc:
            left[str(domain_id)] = f"its migration {migration_id} cannot be aborted: {exc.detail}"
    return left


def recover_host(
    session: Session, host_id: str, now: datetime, reason: str, actor: str = "service"
) -> RecoveryOut:
    """Declare the host failed and restart its protected domains (see the module docstring)."""
    host = session.scalars(select(Host).where(Host.id == host_id).with_for_update()).first()
    if host is None:
        raise NotFound(f"no host with id {host_id}")
    if host.state != "offline":
        before = host.state
        host.state, host.updated_at = "offline", now
        record_event(
            session,
            actor,
            "host.failed",
            "host",
            host.id,
            before={"state": before},
            after={"state": "offline", "reason": reason},
            at=now,
        )
    session.flush()
    left = _abort_migrations(session, host_id, actor, now)
    settings = failover.cluster_settings(session)
    ha = failover.settings_of(settings)
    selector = failover.parse_selector(ha.label_selector if ha else None, ("ha",))
    inputs = failover.load_inputs(session, selector, protected_on=[host_id])
    restarts, stranded = _plan(inputs, host_id, left)
    placed = _move(session, host, inputs, restarts, stranded, now, actor)
    previous = host.recovery or {}
    record: dict[str, Any] = {
        "reason": reason,
        "failed_at": previous.get("failed_at") or now.isoformat(),
        "restarts": [*previous.get("restarts", []), *placed],
        "stranded": [s.model_dump() for s in stranded],
    }
    host.recovery, host.updated_at = record, now
    session.flush()
    out = recovery_out(session, host)
    assert out is not None
    return out


Restart = tuple[int, int, I64]  # protected domain index, host index, pnode per vnode


def _plan(
    inputs: failover.Inputs, host_id: str, left: dict[str, str]
) -> tuple[list[Restart], list[UnplacedOut]]:
    prot = inputs.protected
    stranded = [
        UnplacedOut(domain_id=d, domain_name=n, reason=left[d])
        for d, n in zip(prot.ids, prot.names, strict=True)
        if d in left
    ]
    if not prot.ids:
        return [], stranded
    eh = inputs.engine_hosts
    h = inputs.hosts.ids.index(host_id)
    eligible = eh.eligible.copy()
    eligible[h] = False
    hosts = type(eh)(
        free_mib=eh.free_mib,
        squeezable_mib=np.zeros_like(eh.squeezable_mib),  # free memory only: no squeeze
        eligible=eligible,
        shape=eh.shape,
        shapes=eh.shapes,
    )
    plan = plan_failover(
        hosts, inputs.engine_domains, host_failures=1, find_max=False, with_restarts=True
    )
    out: list[Restart] = []
    r = plan.restarts
    for i in range(len(r)):
        d = int(r.domain[i])
        if int(r.failed_host[i]) != h or prot.ids[d] in left:
            continue
        n_v = prot.n_vnodes(d)
        out.append((d, int(r.host[i]), r.mapping[i, :n_v].copy()))
    if plan.worst is not None:
        stranded += [
            UnplacedOut(
                domain_id=prot.ids[u.domain], domain_name=prot.names[u.domain], reason=u.reason
            )
            for u in plan.worst.unplaced
            if prot.ids[u.domain] not in left
        ]
    return out, stranded


def _move(
    session: Session,
    host: Host,
    inputs: failover.Inputs,
    restarts: list[Restart],
    stranded: list[UnplacedOut],
    now: datetime,
    actor: str,
) -> list[dict[str, str]]:
    """Move each restart that still fits under the destinations' locks; the rest strand."""
    if not restarts:
        return []
    src = load_host_accounting(session, host.id, lock=True, now=now)
    assert src is not None
    prot = inputs.protected
    dest_ids = sorted({inputs.hosts.ids[h] for _, h, _ in restarts})
    dests: dict[str, HostAccounting] = {}
    for dest_id in dest_ids:
        state = load_host_accounting(session, dest_id, lock=True, now=now)
        if state is not None:
            dests[dest_id] = state
    room = {k: s.capacity_mib - s.claimed_mib - s.allocated_mib() for k, s in dests.items()}
    placed: list[dict[str, str]] = []
    moved_off = False
    by_dest: dict[str, ChangeSet] = {k: ChangeSet() for k in dests}
    for d, h, mapping in restarts:
        dest_id = inputs.hosts.ids[h]
        domain = src.domain(prot.ids[d])
        dst = dests.get(dest_id)
        if domain is None or dst is None or dst.host.state != "active":
            stranded.append(
                UnplacedOut(
                    domain_id=prot.ids[d],
                    domain_name=prot.names[d],
                    reason="it or its destination changed while the recovery ran; call again",
                )
            )
            continue
        need = np.zeros(dst.n_pnodes, dtype=np.int64)
        targets = np.array([vn.target_mib for vn in domain.vnodes], dtype=np.int64)
        np.add.at(need, mapping, targets)
        if (need > room[dest_id]).any():
            stranded.append(
                UnplacedOut(
                    domain_id=domain.id,
                    domain_name=domain.name,
                    reason=f"host {dst.host.name} no longer has the room the plan found; "
                    "call again",
                )
            )
            continue
        room[dest_id] = room[dest_id] - need
        x = np.zeros((len(domain.vnodes), dst.n_pnodes), dtype=np.int64)
        x[np.arange(len(domain.vnodes)), mapping] = targets
        session.execute(
            update(Step)
            .where(Step.domain_id == domain.id, Step.state.in_(("pending", "waiting")))
            .values(state="cancelled", detail=f"host {host.name} failed", acked_at=now)
        )
        src.domains.remove(domain)
        src.backing.pop(domain.id, None)
        moved_off = True
        domain.host_id, domain.state, domain.updated_at = dest_id, "restarting", now
        for vn, home in zip(domain.vnodes, mapping.tolist(), strict=True):
            vn.home_pnode = int(home)
        dst.domains.append(domain)
        change = by_dest[dest_id]
        change.backing[domain.id] = x
        change.actual_mib[domain.id] = {vn.index: None for vn in domain.vnodes}
        change.new_steps.append(
            step_row(
                domain_id=domain.id,
                host_id=dest_id,
                seq=0,
                phase=RESTART_PHASE,
                op=START_OP,
                vnode=None,
                pnode=None,
                mib=int(targets.sum()),
                pfn_ranges=[],
                target_mib=int(targets.sum()),
                created_at=now,
            )
        )
        change.events.append(
            event(
                actor,
                "domain.restarting",
                "domain",
                domain.id,
                at=now,
                before={"host_id": host.id},
                after={
                    "host_id": dest_id,
                    "home_pnodes": mapping.tolist(),
                    "vnode_targets_mib": targets.tolist(),
                },
            )
        )
        placed.append({"domain_id": domain.id, "host_id": dest_id})
    session.flush()
    if moved_off:  # the domains' memory left the failed host
        apply(session, src, ChangeSet(), now=now)
    for dest_id, change in by_dest.items():
        if change:
            apply(session, dests[dest_id], change, now=now)
    return placed


def recovery_out(session: Session, host: Host) -> RecoveryOut | None:
    """The host's recovery with each restarted domain's state now (one statement)."""
    rec = host.recovery
    if rec is None:
        return None
    restarts = rec.get("restarts", [])
    states = domain_states(session, [r["domain_id"] for r in restarts])
    rows = [
        RecoveryRestart(
            domain_id=r["domain_id"],
            host_id=r["host_id"],
            state=states.get(r["domain_id"], ("deleted", None))[0],
        )
        for r in restarts
    ]
    return RecoveryOut(
        reason=str(rec.get("reason", "")),
        failed_at=str(rec.get("failed_at", "")),
        restarts=rows,
        stranded=[UnplacedOut(**s) for s in rec.get("stranded", [])],
        done=all(r.state != "restarting" for r in rows),
    )


def on_step_acked(session: Session, step: Step, ok: bool, actor: str, now: datetime) -> None:
    """A destination's agent acknowledged a restart's `start` step: the domain runs (or its
    start failed). Called by `core.agents.record_ack`; does nothing for other steps."""
    if step.phase != RESTART_PHASE or step.op != START_OP:
        return
    state = "running" if ok else "failed"
    now_state = session.scalar(
        select(Domain.state).where(Domain.id == step.domain_id).with_for_update()
    )
    if now_state == "restarting":
        session.execute(
            update(Domain).where(Domain.id == step.domain_id).values(state=state, updated_at=now)
        )
        record_event(
            session,
            actor,
            "domain.restarted" if ok else "domain.restart_failed",
            "domain",
            step.domain_id,
            after={"host_id": step.host_id, "state": state},
            at=now,
        )


def start_destinations(
    session: Session, host_id: str, domain_ids: Sequence[str]
) -> dict[str, StepDestination]:
    """For the agent's restart steps: this host and, per vnode, the pnode the recovery backed it
    on (its home), so the agent binds the guest where its memory is charged (xl's vnuma
    `pnode=`). One statement, however many steps; a domain no longer on the host is left out."""
    ids = sorted(set(domain_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(Vnode.domain_id, Vnode.home_pnode, Host.name)
        .join(Domain, Domain.id == Vnode.domain_id)
        .join(Host, Host.id == Domain.host_id)
        .where(Vnode.domain_id.in_(ids), Domain.host_id == host_id)
        .order_by(Vnode.domain_id, Vnode.index)
    ).all()
    out: dict[str, StepDestination] = {}
    for domain_id, home, host_name in rows:
        dest = out.get(domain_id)
        if dest is None:
            dest = out[domain_id] = StepDestination(
                host_id=host_id, host_name=host_name, nodesets=[]
            )
        dest.nodesets.append([] if home is None else [int(home)])
    return out


def fail_host(
    session: Session, host_id: str, reason: str, actor: str, now: datetime
) -> RecoveryOut:
    """`POST /v1/hosts/{id}/fail`: `recover_host` as the request's unit of work."""
    out = recover_host(session, host_id, now, reason, actor)
    assert out is not None
    return out
