"""Hosts: registration with SLIT validation, listing, state changes, deletion, accounting."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from service.api.auth import Admin, issue_token
from service.api.deps import Now, SessionDep, SettingsDep
from service.api.etag import IfMatch, check_if_match, etag
from service.api.filters import ExternalIdQuery, LabelQuery, NameQuery, parse_labels
from service.api.idempotency import IdempotencyKey, idempotent_create
from service.api.pagination import CursorQuery, LimitQuery, next_cursor, page_size
from service.api.problems import Conflict, InvalidInput, NotFound, responses
from service.core import evacuation
from service.core.migrations import claims_of, migration_out
from service.core.rebalancing import rebalance_host
from service.core.squeezing import squeeze_host
from service.core.sweeper import sweep_migrations
from service.core.views import accounting_out
from service.db import hosts as repo
from service.db.audit import record_event
from service.db.loaders import load_host_accounting
from service.db.models import Host, Migration, Pnode
from service.db.retry import retry_transaction
from service.db.tokens import revoke_tokens
from service.engine.topology import validate_slit
from service.errors import issues_to_errors
from service.schemas.agent import AgentToken
from service.schemas.common import Page
from service.schemas.hosts import (
    Accounting,
    Evacuation,
    HostCreate,
    HostCreated,
    HostOut,
    HostPatch,
    MemoryTotals,
    PnodeOut,
)
from service.schemas.migrations import (
    EvacuateRequest,
    EvacuationOut,
    RebalanceOut,
    RebalanceRequest,
    Unplaced,
)
from service.schemas.squeeze import SqueezeRequest, SqueezeResult

router = APIRouter(prefix="/v1/hosts", tags=["hosts"])
HostId = Annotated[uuid.UUID, "host id"]


def host_out(host: Host, evacuation: tuple[int, int] | None = None) -> HostOut:
    """`evacuation`: (domains left, migrations in flight), for a host being evacuated."""
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
        version=host.version,
        created_at=host.created_at,
    )


def full_host_out(session: Session, host: Host) -> HostOut:
    counts = None
    if host.evacuation_requested_at is not None:
        counts = repo.evacuation_counts(session, [host.id])[host.id]
    return host_out(host, counts)


def load_host(session: SessionDep, host_id: uuid.UUID, *, lock: bool = False) -> Host:
    host = repo.get_host(session, str(host_id), lock=lock)
    if host is None:
        raise NotFound(f"no host with id {host_id}")
    return host


def _validate_topology(body: HostCreate) -> None:
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


@router.post(
    "",
    status_code=201,
    response_model=HostCreated,
    responses=responses(401, 403, 409, 413, 422),
    summary="Register a host with its NUMA topology",
)
def create_host(
    body: HostCreate,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Admin,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    _validate_topology(body)

    def create() -> tuple[int, dict[str, Any], dict[str, str]]:
        if session.scalar(repo.name_taken(body.name)):
            raise Conflict(f"a host named {body.name!r} already exists")
        if body.external_id is not None and session.scalar(
            repo.external_id_taken(body.external_id)
        ):
            raise Conflict(f"a host with external_id {body.external_id!r} already exists")
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
                allocated_mib=0,
                claimed_mib=0,
            )
            for i, p in enumerate(body.pnodes)
        ]
        session.add(host)
        session.flush()
        token = issue_token(session, "agent", host.id)
        out = host_out(host)
        record_event(session, principal.actor, "host.created", "host", host.id, after=_summary(out))
        created = HostCreated(**out.model_dump(), agent_token=token)
        return (
            201,
            created.model_dump(mode="json"),
            {"Location": f"/v1/hosts/{host.id}", "ETag": etag(host.version)},
        )

    return idempotent_create(
        session, request, settings, principal.actor, idempotency_key, body, create
    )


def _summary(out: HostOut) -> dict[str, Any]:
    return {
        "name": out.name,
        "state": out.state,
        "pnodes": len(out.pnodes),
        "capacity_mib": [p.capacity_mib for p in out.pnodes],
    }


@router.get("", response_model=Page[HostOut], responses=responses(401, 403, 422))
def list_hosts(
    session: SessionDep,
    settings: SettingsDep,
    _: Admin,
    name: NameQuery = None,
    external_id: ExternalIdQuery = None,
    label: LabelQuery = None,
    limit: LimitQuery = None,
    cursor: CursorQuery = None,
) -> Page[HostOut]:
    rows, more = repo.list_hosts(
        session,
        cursor,
        page_size(limit, settings),
        name=name,
        external_id=external_id,
        labels=parse_labels(label),
    )
    evacuating = [h.id for h in rows if h.evacuation_requested_at is not None]
    counts = repo.evacuation_counts(session, evacuating)
    return Page[HostOut](
        items=[host_out(h, counts.get(h.id)) for h in rows],
        next_cursor=next_cursor(rows, more),
    )


@router.get("/by-name/{name}", response_model=HostOut, responses=responses(401, 403, 404, 422))
def get_host_by_name(name: str, response: Response, session: SessionDep, _: Admin) -> HostOut:
    host = repo.get_host_by_name(session, name)
    if host is None:
        raise NotFound(f"no host named {name!r}")
    response.headers["ETag"] = etag(host.version)
    return full_host_out(session, host)


@router.get("/{host_id}", response_model=HostOut, responses=responses(401, 403, 404, 422))
def get_host(host_id: uuid.UUID, response: Response, session: SessionDep, _: Admin) -> HostOut:
    host = load_host(session, host_id)
    response.headers["ETag"] = etag(host.version)
    return full_host_out(session, host)


@router.patch(
    "/{host_id}",
    response_model=HostOut,
    responses=responses(401, 403, 404, 412, 422),
    summary="Change a host's state (active, maintenance, offline)",
)
@retry_transaction
def patch_host(
    host_id: uuid.UUID,
    body: HostPatch,
    response: Response,
    session: SessionDep,
    principal: Admin,
    if_match: IfMatch = None,
) -> HostOut:
    host = load_host(session, host_id, lock=True)
    check_if_match(if_match, host.version)
    _patch_host(session, host, body, principal.actor)
    out = full_host_out(session, host)
    session.commit()
    response.headers["ETag"] = etag(out.version)
    return out


def _patch_host(session: Session, host: Host, body: HostPatch, actor: str) -> None:
    fields = body.model_fields_set
    if body.state is not None and body.state != host.state:
        before = host.state
        host.state = body.state
        if body.state == "active":
            host.evacuation_requested_at = None  # back in service: the evacuation is over
        record_event(
            session,
            actor,
            "host.state_changed",
            "host",
            host.id,
            before={"state": before},
            after={"state": body.state},
        )
    changes: dict[str, tuple[Any, Any]] = {}
    if "labels" in fields and body.labels != host.labels:
        changes["labels"] = (host.labels, body.labels)
        host.labels = dict(body.labels or {})
    if "external_id" in fields and body.external_id != host.external_id:
        if body.external_id is not None and session.scalar(
            repo.external_id_taken(body.external_id, other_than=host.id)
        ):
            raise Conflict(f"a host with external_id {body.external_id!r} already exists")
        changes["external_id"] = (host.external_id, body.external_id)
        host.external_id = body.external_id
    if changes:
        record_event(
            session,
            actor,
            "host.updated",
            "host",
            host.id,
            before={k: b for k, (b, _) in changes.items()},
            after={k: a for k, (_, a) in changes.items()},
        )
    session.flush()


@router.delete(
    "/{host_id}",
    status_code=204,
    responses=responses(401, 403, 404, 409, 412, 422),
    summary="Remove a host (refused while domains, claims or migrations use it)",
)
@retry_transaction
def delete_host(
    host_id: uuid.UUID, session: SessionDep, principal: Admin, if_match: IfMatch = None
) -> Response:
    host = load_host(session, host_id, lock=True)
    check_if_match(if_match, host.version)
    reason = repo.host_usage_reason(session, host.id)
    if reason is not None:
        raise Conflict(f"host {host.name} is in use: {reason}")
    summary = _summary(host_out(host))
    session.delete(host)
    revoke_tokens(session, "agent", host.id)
    record_event(session, principal.actor, "host.deleted", "host", host.id, before=summary)
    session.commit()
    return Response(status_code=204)


@router.post(
    "/{host_id}/evacuate",
    status_code=202,
    response_model=EvacuationOut,
    responses=responses(401, 403, 404, 422),
    summary="Drain a host: maintenance, then a migration for each domain to the best other host.",
    description="""
Called by an orchestrator (admin token) before host maintenance. The host goes to `maintenance`
at once (it takes no new domain) and, for each of its domains, a migration to the best other
active host is started, each with its destination claims taken atomically (`migration.created`
events). A domain that fits nowhere stays, listed in `unplaced` with its reason. With
`auto_advance` every migration advances on its own as agents and guests complete the steps;
`GET /v1/hosts/{id}` shows `evacuation.domains_remaining` until the host is empty. Calling it
again starts migrations only for the domains not already leaving. `PATCH` the host back to
`active` to end the evacuation.
""",
)
@retry_transaction
def evacuate(
    host_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Admin,
    now: Now,
    body: EvacuateRequest | None = None,
) -> EvacuationOut:
    options = body or EvacuateRequest()  # no body: the defaults
    sweep_migrations(request.app.state.sessionmaker, now, settings)
    result = evacuation.evacuate(
        session,
        str(host_id),
        options.strategy,
        options.auto_advance,
        principal.actor,
        settings,
        now,
    )
    found = session.scalars(
        select(Migration)
        .where(Migration.id.in_(result.migration_ids))
        .options(selectinload(Migration.steps))
    ).all()
    by_id = {m.id: m for m in found}
    claims = claims_of(session, result.migration_ids)
    return EvacuationOut(
        host_id=str(host_id),
        migrations=[
            migration_out(by_id[m], claims[m], now, settings) for m in result.migration_ids
        ],
        unplaced=[Unplaced(domain_id=d, reason=r) for d, r in result.unplaced],
    )


@router.post(
    "/{host_id}/agent-token",
    response_model=AgentToken,
    responses=responses(401, 403, 404, 422),
    summary="Rotate the host agent's token: the old one stops working at once",
)
def rotate_agent_token(host_id: uuid.UUID, session: SessionDep, principal: Admin) -> AgentToken:
    host = load_host(session, host_id, lock=True)
    token = issue_token(session, "agent", host.id)
    record_event(session, principal.actor, "host.agent_token_rotated", "host", host.id)
    session.commit()
    return AgentToken(host_id=host.id, agent_token=token)


@router.post(
    "/{host_id}/squeeze",
    response_model=SqueezeResult,
    responses=responses(401, 403, 404, 409, 422),
    summary="Free memory per pnode or in total, or balance, by moving every domain's target",
)
@retry_transaction
def post_squeeze(
    host_id: uuid.UUID,
    body: SqueezeRequest,
    session: SessionDep,
    settings: SettingsDep,
    principal: Admin,
    now: Now,
) -> SqueezeResult:
    result = squeeze_host(session, str(host_id), body, principal.actor, settings, now)
    if not body.dry_run:
        session.commit()
    return result


@router.post(
    "/{host_id}/rebalance",
    response_model=RebalanceOut,
    responses=responses(401, 403, 404, 409, 422),
    summary="AutoNUMA: block moves within a MiB budget that bring memory where guests expect it",
)
@retry_transaction
def post_rebalance(
    host_id: uuid.UUID, body: RebalanceRequest, session: SessionDep, principal: Admin, now: Now
) -> RebalanceOut:
    result = rebalance_host(session, str(host_id), body, principal.actor, now)
    if not body.dry_run:
        session.commit()
    return result


@router.get(
    "/{host_id}/accounting",
    response_model=Accounting,
    responses=responses(401, 403, 404, 422),
    summary="Per-pnode capacity, allocated, claimed and free MiB, and every domain's backing",
)
def get_accounting(host_id: uuid.UUID, session: SessionDep, _: Admin, now: Now) -> Accounting:
    state = load_host_accounting(session, str(host_id), lock=False, now=now)
    if state is None:
        raise NotFound(f"no host with id {host_id}")
    return accounting_out(state)
