"""Every operation of the API as a `Call`, once, for both clients.

Public for callers that send calls themselves, e.g. `bench/load.py`, which wraps them in
`with_status` to count each answer's status code while still getting the parsed models. Every
answer with a body parses into the model openapi/openapi.json names for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel

from numa_balloon_client import models as m
from numa_balloon_client._core import (
    Call,
    Page,
    as_json,
    as_text,
    dump,
    labels_query,
    model,
    new_key,
    nothing,
    page_of,
    query,
)

Body = BaseModel | Mapping[str, Any]
Labels = Mapping[str, str] | Sequence[str] | None
IfMatch = bool | str | None
ExportFormat = Literal["xl", "libvirt", "libvirt-domain", "xenstore"]
Strategy = Literal["rebalance", "replug"]
RunsOn = Literal["source", "destination"]


def _id(value: str) -> str:
    return quote(value, safe="")


def host_path(host_id: str) -> str:
    return f"/v1/hosts/{_id(host_id)}"


def domain_path(domain_id: str) -> str:
    return f"/v1/domains/{_id(domain_id)}"


def migration_path(migration_id: str) -> str:
    return f"/v1/migrations/{_id(migration_id)}"


def _create(path: str, body: Body, parse: Any, key: str | None, **kw: Any) -> Call[Any]:
    return Call(
        "POST", path, parse, body=dump(body), create=True, idempotency_key=key or new_key(), **kw
    )


# --- health -------------------------------------------------------------------------------------


def healthz() -> Call[dict[str, str]]:
    return Call("GET", "/healthz", as_json)


def readyz() -> Call[dict[str, Any]]:
    """`{status, revision}` (no schema in the API: a 503 problem while not ready)."""
    return Call("GET", "/readyz", as_json)


# --- hosts --------------------------------------------------------------------------------------


def create_host(body: Body, key: str | None) -> Call[m.HostCreated]:
    return _create("/v1/hosts", body, model(m.HostCreated), key)


def list_hosts(
    limit: int | None, cursor: str | None, name: str | None, external_id: str | None, labels: Labels
) -> Call[Page[m.HostOut]]:
    params = query(
        limit=limit, cursor=cursor, name=name, external_id=external_id, label=labels_query(labels)
    )
    return Call("GET", "/v1/hosts", page_of(m.HostOut), params=params)


def get_host(host_id: str) -> Call[m.HostOut]:
    path = host_path(host_id)
    return Call("GET", path, model(m.HostOut), resource=path)


def patch_host(host_id: str, body: Body, if_match: IfMatch) -> Call[m.HostOut]:
    path = host_path(host_id)
    return Call("PATCH", path, model(m.HostOut), body=dump(body), resource=path, if_match=if_match)


def delete_host(host_id: str, if_match: IfMatch) -> Call[None]:
    path = host_path(host_id)
    return Call("DELETE", path, nothing, resource=path, if_match=if_match)


def host_accounting(host_id: str) -> Call[m.Accounting]:
    return Call("GET", f"{host_path(host_id)}/accounting", model(m.Accounting))


def squeeze(host_id: str, body: Body) -> Call[m.SqueezeResult]:
    return Call("POST", f"{host_path(host_id)}/squeeze", model(m.SqueezeResult), body=dump(body))


def rebalance(host_id: str, body: Body) -> Call[m.RebalanceOut]:
    return Call("POST", f"{host_path(host_id)}/rebalance", model(m.RebalanceOut), body=dump(body))


def evacuate(host_id: str, body: Body | None) -> Call[m.EvacuationOut]:
    """202: the migrations started, and the domains no other host takes (with the reason)."""
    payload = dump(body) if body is not None else None
    return Call("POST", f"{host_path(host_id)}/evacuate", model(m.EvacuationOut), body=payload)


def rotate_agent_token(host_id: str) -> Call[m.AgentToken]:
    return Call("POST", f"{host_path(host_id)}/agent-token", model(m.AgentToken))


# --- domains ------------------------------------------------------------------------------------


def create_domain(body: Body, key: str | None) -> Call[m.DomainCreated]:
    return _create("/v1/domains", body, model(m.DomainCreated), key)


def list_domains(
    host_id: str | None,
    limit: int | None,
    cursor: str | None,
    name: str | None,
    external_id: str | None,
    labels: Labels,
) -> Call[Page[m.DomainOut]]:
    params = query(
        host_id=host_id,
        limit=limit,
        cursor=cursor,
        name=name,
        external_id=external_id,
        label=labels_query(labels),
    )
    return Call("GET", "/v1/domains", page_of(m.DomainOut), params=params)


def get_domain(domain_id: str) -> Call[m.DomainOut]:
    path = domain_path(domain_id)
    return Call("GET", path, model(m.DomainOut), resource=path)


def set_target(domain_id: str, body: Body, if_match: IfMatch) -> Call[m.DomainOut]:
    path = domain_path(domain_id)
    return Call(
        "PUT",
        f"{path}/target",
        model(m.DomainOut),
        body=dump(body),
        resource=path,
        if_match=if_match,
    )


def delete_domain(domain_id: str, if_match: IfMatch) -> Call[None]:
    path = domain_path(domain_id)
    return Call("DELETE", path, nothing, resource=path, if_match=if_match)


def domain_placements(domain_id: str) -> Call[m.Placements]:
    return Call("GET", f"{domain_path(domain_id)}/placements", model(m.Placements))


@dataclass(frozen=True)
class Definition:
    """What `libvirt-domain` adds for a definition that boots: the domain type (`qemu` where
    there is no KVM), a kernel and initrd to boot directly, its command line, a serial log.
    Paths are on the hypervisor host."""

    domain_type: Literal["kvm", "qemu"] | None = None
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    serial_log: str | None = None


def export_domain(
    domain_id: str, fmt: ExportFormat, definition: Definition | None = None
) -> Call[str]:
    extra = {} if definition is None else asdict(definition)
    params = query(format=fmt, **extra)
    return Call("GET", f"{domain_path(domain_id)}/export", as_text, params=params)


def rotate_guest_token(domain_id: str) -> Call[m.GuestToken]:
    return Call("POST", f"{domain_path(domain_id)}/guest-token", model(m.GuestToken))


def place(body: Body, limit: int | None) -> Call[m.PlacementPreview]:
    """`POST /v1/placements`: a domain spec ranked over every host, nothing created."""
    parse = model(m.PlacementPreview)
    return Call("POST", "/v1/placements", parse, body=dump(body), params=query(limit=limit))


# --- migrations ---------------------------------------------------------------------------------


def migration_body(
    domain_id: str,
    destination_host_id: str,
    strategy: Strategy,
    policy: str | None,
    auto_advance: bool | None,
) -> dict[str, Any]:
    """Optional fields are left out when unset, so an older server's strict model accepts it."""
    body: dict[str, Any] = {
        "domain_id": domain_id,
        "destination_host_id": destination_host_id,
        "strategy": strategy,
    }
    if policy is not None:
        body["policy"] = policy
    if auto_advance is not None:
        body["auto_advance"] = auto_advance
    return body


def plan_migration(body: Body) -> Call[m.PlanOut]:
    return Call("POST", "/v1/migrations/plan", model(m.PlanOut), body=dump(body))


def start_migration(body: Body, key: str | None) -> Call[m.MigrationOut]:
    return _create("/v1/migrations", body, model(m.MigrationOut), key)


def get_migration(migration_id: str) -> Call[m.MigrationOut]:
    path = migration_path(migration_id)
    return Call("GET", path, model(m.MigrationOut), resource=path)


def advance_migration(migration_id: str) -> Call[m.MigrationOut]:
    return Call("POST", f"{migration_path(migration_id)}/advance", model(m.MigrationOut))


def abort_migration(migration_id: str, runs_on: RunsOn | None = None) -> Call[m.MigrationOut]:
    """`runs_on` says where the domain runs when the live migration may have run (migrating)."""
    body = None if runs_on is None else {"runs_on": runs_on}
    return Call("POST", f"{migration_path(migration_id)}/abort", model(m.MigrationOut), body=body)


def list_migrations(
    domain_id: str | None, state: str | None, limit: int | None, cursor: str | None
) -> Call[Page[m.MigrationOut]]:
    params = query(domain_id=domain_id, state=state, limit=limit, cursor=cursor)
    return Call("GET", "/v1/migrations", page_of(m.MigrationOut), params=params)


# --- cluster ------------------------------------------------------------------------------------


def get_cluster() -> Call[m.ClusterOut]:
    return Call("GET", "/v1/cluster", model(m.ClusterOut))


def put_cluster(body: Body) -> Call[m.ClusterOut]:
    return Call("PUT", "/v1/cluster", model(m.ClusterOut), body=dump(body))


def patch_cluster(body: Body) -> Call[m.ClusterOut]:
    return Call("PATCH", "/v1/cluster", model(m.ClusterOut), body=dump(body))


def failover_plan(body: Body) -> Call[m.FailoverPlanOut]:
    return Call("POST", "/v1/cluster/failover-plan", model(m.FailoverPlanOut), body=dump(body))


def fail_host(host_id: str, reason: str | None) -> Call[m.RecoveryOut]:
    body = None if reason is None else {"reason": reason}
    return Call("POST", f"{host_path(host_id)}/fail", model(m.RecoveryOut), body=body)


def get_template() -> Call[m.WorstCaseTemplateOut]:
    return Call("GET", "/v1/cluster/worst-case-template", model(m.WorstCaseTemplateOut))


def derive_template() -> Call[m.WorstCaseTemplateOut]:
    return Call("POST", "/v1/cluster/worst-case-template", model(m.WorstCaseTemplateOut))


# --- events -------------------------------------------------------------------------------------


def list_events(
    since: int | None,
    cursor: str | None,
    limit: int | None,
    subject_id: str | None,
    kind: str | None,
    actor: str | None,
    wait_s: float | None,
    timeout_s: float | None,
) -> Call[Page[m.EventOut]]:
    wait = None if wait_s is None else max(0, min(60, round(wait_s)))
    params = query(
        since=since,
        cursor=cursor,
        limit=limit,
        subject_id=subject_id,
        kind=kind,
        actor=actor,
        wait=wait or None,
    )
    return Call("GET", "/v1/events", page_of(m.EventOut), params=params, timeout_s=timeout_s)


def events_stream_params(
    subject_id: str | None, kind: str | None, actor: str | None
) -> tuple[tuple[str, str], ...]:
    return query(subject_id=subject_id, kind=kind, actor=actor)


# --- API keys -----------------------------------------------------------------------------------


def create_api_key(
    name: str, role: str, expires_at: datetime | str | None, key: str | None
) -> Call[m.ApiKeyCreated]:
    body: dict[str, Any] = {"name": name, "role": role}
    if expires_at is not None:
        body["expires_at"] = (
            expires_at.isoformat() if isinstance(expires_at, datetime) else expires_at
        )
    return _create("/v1/api-keys", body, model(m.ApiKeyCreated), key)


def list_api_keys(limit: int | None, cursor: str | None) -> Call[Page[m.ApiKeyOut]]:
    params = query(limit=limit, cursor=cursor)
    return Call("GET", "/v1/api-keys", page_of(m.ApiKeyOut), params=params)


def get_api_key(key_id: str) -> Call[m.ApiKeyOut]:
    return Call("GET", f"/v1/api-keys/{_id(key_id)}", model(m.ApiKeyOut))


def revoke_api_key(key_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/api-keys/{_id(key_id)}", nothing)


def rotate_api_key(key_id: str) -> Call[m.ApiKeyCreated]:
    return Call("POST", f"/v1/api-keys/{_id(key_id)}/rotate", model(m.ApiKeyCreated))


# --- host agent (agent token) -------------------------------------------------------------------


def agent_observed(host_id: str, body: Body) -> Call[m.ObservedOut]:
    path = f"/v1/agent/hosts/{_id(host_id)}/observed"
    return Call("PUT", path, model(m.ObservedOut), body=dump(body))


def agent_steps(host_id: str) -> Call[m.StepList]:
    return Call("GET", f"/v1/agent/hosts/{_id(host_id)}/steps", model(m.StepList))


def agent_ack(host_id: str, step_id: str, ok: bool, detail: str | None) -> Call[m.StepOut]:
    path = f"/v1/agent/hosts/{_id(host_id)}/steps/{_id(step_id)}/ack"
    body: dict[str, Any] = {"ok": ok} if detail is None else {"ok": ok, "detail": detail}
    # A repeated ack returns the same step on the server, so a lost answer may be retried.
    return Call("POST", path, model(m.StepOut), body=body, idempotent=True)


def agent_report(host_id: str, body: Body) -> Call[m.AgentReportOut]:
    """The batch report: free memory per pnode and every domain's pool sizes."""
    path = f"/v1/agent/hosts/{_id(host_id)}/report"
    return Call("POST", path, model(m.AgentReportOut), body=dump(body))


# --- guest (guest token) ------------------------------------------------------------------------


def guest_topology() -> Call[m.GuestTopology]:
    return Call("GET", "/v1/guest/topology", model(m.GuestTopology))


def guest_balloon() -> Call[m.GuestBalloon]:
    return Call("GET", "/v1/guest/balloon", model(m.GuestBalloon))


def guest_report(body: Body) -> Call[m.GuestBalloon]:
    return Call("PUT", "/v1/guest/balloon", model(m.GuestBalloon), body=dump(body))
