"""Hosts: registration with its pnodes and SLIT, reads, state changes, deletion, the agent's
token, evacuation results and accounting.

The rules live here so that the router only parses, authorizes and renders; every operation
raises `service.errors` kinds and leaves the commit to its unit of work (`service.core.unit`).
An evacuation is the exception: it starts each migration in a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from service.core import evacuation
from service.core.bookkeeping import set_bookkeeping
from service.core.migration_views import claims_of, migration_out
from service.core.sweeper import sweep_migrations
from service.core.unit import Database, several
from service.core.views import accounting_out, host_out, host_summary
from service.db import hosts as repo
from service.db.audit import record_event
from service.db.loaders import load_host_accounting
from service.db.models import Host, Pnode
from service.db.pagination import next_cursor
from service.db.tokens import issue_token, revoke_tokens
from service.engine.topology import validate_slit
from service.errors import Conflict, InvalidInput, NotFound, issues_to_errors
from service.schemas.agent import AgentToken
from service.schemas.common import Page
from service.schemas.hosts import Accounting, HostCreate, HostCreated, HostOut, HostPatch
from service.schemas.migrations import EvacuateRequest, EvacuationOut, Unplaced
from service.settings import Settings


def get_host(session: Session, host_id: str, *, lock: bool = False) -> Host:
    """The host with its pnodes; with `lock`, its row is held until the transaction ends."""
    host = repo.get_host(session, host_id, lock=lock)
    if host is None:
        raise NotFound(f"no host with id {host_id}")
    return host


def get_host_by_name(session: Session, name: str) -> Host:
    host = repo.get_host_by_name(session, name)
    if host is None:
        raise NotFound(f"no host named {name!r}")
    return host


def host_view(session: Session, host: Host) -> HostOut:
    """The host as a response, with its evacuation's progress when one was requested."""
    counts = None
    if host.evacuation_requested_at is not None:
        counts = repo.evacuation_counts(session, [host.id])[host.id]
    return host_out(host, counts)


def read_host(session: Session, host_id: str) -> HostOut:
    return host_view(session, get_host(session, host_id))


def read_host_by_name(session: Session, name: str) -> HostOut:
    return host_view(session, get_host_by_name(session, name))


def list_hosts(
    session: Session,
    cursor: str | None,
    limit: int,
    *,
    name: str | None,
    external_id: str | None,
    labels: Sequence[tuple[str, str]],
) -> Page[HostOut]:
    """One page of hosts; evacuation progress for the whole page in two statements."""
    rows, more = repo.list_hosts(
        session, cursor, limit, name=name, external_id=external_id, labels=labels
    )
    evacuating = [h.id for h in rows if h.evacuation_requested_at is not None]
    counts = repo.evacuation_counts(session, evacuating)
    return Page[HostOut](
        items=[host_out(h, counts.get(h.id)) for h in rows],
        next_cursor=next_cursor(rows, more),
    )


def validate_topology(body: HostCreate) -> None:
    """Every SLIT and pnode problem at once, each with its location."""
    errors = issues_to_errors(
        validate_slit(body.distances, len(body.pnodes), loc_prefix=("distances",))
    )
    errors += [
        {
            "loc": ["body", "pnodes", i, "reserved_mib"],
            "msg": f"reserved_mib ({p.reserved_mib}) must be below memory_mib ({p.memory_mib})",
        }
        for i, p in enumerate(body.pnodes)
        if p.reserved_mib >= p.memory_mib
    ]
    if errors:
        raise InvalidInput("the host topology is not valid", errors=errors)


def _check_unique(session: Session, body: HostCreate) -> None:
    if session.scalar(repo.name_taken(body.name)):
        raise Conflict(f"a host named {body.name!r} already exists")
    if body.external_id is not None and session.scalar(repo.external_id_taken(body.external_id)):
        raise Conflict(f"a host with external_id {body.external_id!r} already exists")


def register_host(session: Session, body: HostCreate, actor: str) -> HostCreated:
    """A new active host with empty pnodes and its agent's first token (shown once). The
    topology is checked by `validate_topology` before, outside any idempotency record."""
    _check_unique(session, body)
    host = Host(
        name=body.name,
        state="active",
        distances=body.distances,
        external_id=body.external_id,
        labels=body.labels,
    )
    host.pnodes = [
        Pnode(
            index=i,
            memory_mib=p.memory_mib,
            reserved_mib=p.reserved_mib,
            cpus=p.cpus,
        )
        for i, p in enumerate(body.pnodes)
    ]
    session.add(host)
    session.flush()
    token = issue_token(session, "agent", host.id)
    out = host_out(host)
    record_event(session, actor, "host.created", "host", host.id, after=host_summary(out))
    return HostCreated(**out.model_dump(), agent_token=token)


def _set_state(session: Session, host: Host, state: str, actor: str) -> None:
    before = host.state
    host.state = state
    if state == "active":
        host.evacuation_requested_at = None  # back in service: the evacuation is over
    record_event(
        session,
        actor,
        "host.state_changed",
        "host",
        host.id,
        before={"state": before},
        after={"state": state},
    )


def _set_fields(session: Session, host: Host, body: HostPatch, actor: str) -> None:
    """Labels and external id: one `host.updated` event for whatever changed."""
    set_bookkeeping(
        session,
        host,
        body,
        kind="host",
        actor=actor,
        external_id_taken=lambda value: bool(
            session.scalar(repo.external_id_taken(value, other_than=host.id))
        ),
    )


def patch_host(
    session: Session,
    host_id: str,
    body: HostPatch,
    actor: str,
    precondition: Callable[[int], None],
) -> HostOut:
    """Lock the host, check `precondition` (If-Match) against its version, apply the PATCH."""
    host = get_host(session, host_id, lock=True)
    precondition(host.version)
    return change_host(session, host, body, actor)


def remove_host(
    session: Session, host_id: str, actor: str, precondition: Callable[[int], None]
) -> None:
    """Lock the host, check `precondition` (If-Match) against its version, delete it."""
    host = get_host(session, host_id, lock=True)
    precondition(host.version)
    delete_host(session, host, actor)


def change_host(session: Session, host: Host, body: HostPatch, actor: str) -> HostOut:
    """Apply a PATCH to a host read under its lock (and checked against If-Match)."""
    if body.state is not None and body.state != host.state:
        _set_state(session, host, body.state, actor)
    _set_fields(session, host, body, actor)
    session.flush()
    return host_view(session, host)


def delete_host(session: Session, host: Host, actor: str) -> None:
    """Remove a locked host, refused while domains, claims or migrations use it; its agent's
    token stops working with it."""
    reason = repo.host_usage_reason(session, host.id)
    if reason is not None:
        raise Conflict(f"host {host.name} is in use: {reason}")
    summary = host_summary(host_out(host))
    session.delete(host)
    revoke_tokens(session, "agent", host.id)
    record_event(session, actor, "host.deleted", "host", host.id, before=summary)


def rotate_agent_token(session: Session, host_id: str, actor: str) -> AgentToken:
    """A new token for the host's agent; the old one stops working at once."""
    host = get_host(session, host_id, lock=True)
    token = issue_token(session, "agent", host.id)
    record_event(session, actor, "host.agent_token_rotated", "host", host.id)
    return AgentToken(host_id=host.id, agent_token=token)


def evacuate_host(
    db: Database,
    host_id: str,
    options: EvacuateRequest,
    actor: str,
    settings: Settings,
    now: datetime,
) -> EvacuationOut:
    """Sweep lapsed claims first (they may free room elsewhere), then drain the host: each
    migration as of `now`, started in a transaction of its own, and the domains that fit
    nowhere with their reasons."""
    sweep_migrations(db.write_factory, now, settings)

    def drain(session: Session) -> EvacuationOut:
        result = evacuation.evacuate(
            session, host_id, options.strategy, options.auto_advance, actor, settings, now
        )
        by_id = repo.migrations_with_steps(session, result.migration_ids)
        claims = claims_of(session, result.migration_ids, now)
        return EvacuationOut(
            host_id=host_id,
            migrations=[
                migration_out(by_id[m], claims[m], now, settings) for m in result.migration_ids
            ],
            unplaced=[Unplaced(domain_id=d, reason=r) for d, r in result.unplaced],
        )

    return several(db, drain)


def accounting(session: Session, host_id: str, now: datetime) -> Accounting:
    """The host's accounting as stored, read without a lock."""
    state = load_host_accounting(session, host_id, lock=False, now=now)
    if state is None:
        raise NotFound(f"no host with id {host_id}")
    return accounting_out(state)
