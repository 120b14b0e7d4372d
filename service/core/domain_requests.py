"""The domain routes' units of work: each reads or changes domains through `core.domains` and
answers with the response it makes, so the router only parses, authorizes and renders.

The guest's token is issued here (at create, and when the toolstack rotates it), in the unit
that creates or locks its domain, like the agent's token in `core.hosts`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from service.core import domains as core
from service.core import failover, placement
from service.core.exporting import export_domain
from service.core.rows import DomainRow
from service.core.views import domain_out
from service.db.audit import record_event
from service.db.loaders import load_host_accounting
from service.db.tokens import issue_token
from service.errors import Conflict
from service.exports.libvirt_domain import Definition
from service.schemas.agent import GuestToken
from service.schemas.domains import DomainCreate, DomainCreated, DomainOut, DomainPatch, TargetPut

Precondition = Callable[[int], None]


def create(
    session: Session,
    body: DomainCreate,
    actor: str,
    now: datetime,
    ha: failover.Overcommit = failover.Overcommit(),
) -> DomainCreated:
    """Create and place the domain (a 409 with advice when no host takes it) and issue its
    guest's first token, shown in this response only. With failover protection on, a create
    that breaks the plan is refused (`failover.admit`)."""
    domain, state, x = core.create_domain(
        session,
        body,
        actor,
        placement.admission_advice,
        now,
        lambda d: failover.admit(session, "creating the domain", "domain", d.id, actor, ha, now),
    )
    token = issue_token(session, "guest", domain.id, now)
    session.flush()
    out = domain_out(domain, x, state.n_pnodes, state.host.agent)
    return DomainCreated(**out.model_dump(), guest_token=token)


def _view(session: Session, domain: DomainRow) -> DomainOut:
    backing, agents = core.backing_and_agents(session, [domain])
    x, n_pnodes = backing.get(domain.id, (None, 0))
    return domain_out(domain, x, n_pnodes, agents.get(domain.host_id or ""))


def read(session: Session, domain_id: str) -> DomainOut:
    """The domain with its backing: one statement, read as plain rows."""
    return _view_of(core.view_domain(session, domain_id))


def read_by_name(session: Session, name: str) -> DomainOut:
    return _view_of(core.view_domain_by_name(session, name))


def _view_of(v: core.DomainView) -> DomainOut:
    return domain_out(v.domain, v.backing, v.n_pnodes, v.host_agent)


def change_target(
    session: Session,
    domain_id: str,
    body: TargetPut,
    actor: str,
    now: datetime,
    precondition: Precondition,
    ha: failover.Overcommit = failover.Overcommit(),
) -> DomainOut:
    """Set the balloon target (`core.set_target`: on PostgreSQL three statements in all, a raise
    too). With failover protection on, a raise that breaks the plan is refused
    (`failover.admit`); whether it is on was read under the host lock by `set_target`."""
    before: list[int] = []
    domain, state, x, protection_off = core.set_target(
        session, domain_id, body, actor, now, precondition, lambda d: before.append(d.target_mib)
    )
    session.flush()
    if before and domain.target_mib > before[0]:
        failover.admit(
            session,
            "raising the target",
            "domain",
            domain.id,
            actor,
            ha,
            now,
            protection_off=protection_off,
        )
    return domain_out(domain, x, state.n_pnodes, state.host.agent)


def patch(
    session: Session,
    domain_id: str,
    body: DomainPatch,
    actor: str,
    precondition: Precondition,
    now: datetime,
) -> DomainOut:
    """Labels and external id (the ETag moves)."""
    return _view(session, core.patch_domain(session, domain_id, body, actor, now, precondition))


def rotate_guest_token(session: Session, domain_id: str, actor: str, now: datetime) -> GuestToken:
    """A new token for the domain's guest; the old one stops working at once. Rotations of one
    domain serialize on its host's lock."""
    domain, _ = core.lock_domain_host(session, domain_id, now)
    token = issue_token(session, "guest", domain.id, now)
    record_event(session, actor, "domain.guest_token_rotated", "domain", domain.id, at=now)
    return GuestToken(domain_id=domain.id, guest_token=token)


def export(
    session: Session, domain_id: str, fmt: str, definition: Definition | None, now: datetime
) -> str:
    """The domain's placement as xl.cfg, libvirt XML or xenstore keys."""
    domain = core.load_domain(session, domain_id)
    if domain.host_id is None:
        raise Conflict("the domain has no host to export a placement for")
    state = load_host_accounting(session, domain.host_id, lock=False, now=now)
    if state is None:
        raise Conflict("the domain's host is gone")
    return export_domain(domain, state.backing[domain.id], fmt, definition)
