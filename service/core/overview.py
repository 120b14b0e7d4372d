"""The whole cluster at a glance, for the topology view (/ui), as plain records: the view renders
what it is handed and never holds a row, a session or a query.

Read in the fixed number of statements of `service.db.overview.load_overview`, whatever the size
of the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from service.core import failover
from service.db.models import Domain, Host, Migration
from service.db.overview import load_overview
from service.schemas.failover import HaOut


@dataclass(frozen=True)
class PnodeBar:
    index: int
    capacity_mib: int
    allocated_mib: int
    claimed_mib: int


@dataclass(frozen=True)
class HostCard:
    id: str
    name: str
    state: str
    drift_flagged: bool
    distances: list[list[int]]
    pnodes: tuple[PnodeBar, ...]


@dataclass(frozen=True)
class VnodeLine:
    actual_mib: int | None


@dataclass(frozen=True)
class DomainLine:
    id: str
    name: str
    host_id: str | None
    state: str
    target_mib: int
    dynamic_min_mib: int
    dynamic_max_mib: int
    uncooperative: bool
    vnodes: tuple[VnodeLine, ...]


@dataclass(frozen=True)
class MigrationLine:
    id: str
    domain_id: str
    source_host_id: str | None
    destination_host_id: str | None
    strategy: str
    state: str
    plan: dict[str, Any]


@dataclass(frozen=True)
class Topology:
    hosts: list[HostCard]
    domains: list[DomainLine]
    backing: dict[tuple[str, int], dict[str, int]]  # (host, pnode) -> domain -> MiB
    claims: dict[tuple[str, int], int]
    migrations: list[MigrationLine]
    steps: dict[str, tuple[int, int]]  # migration -> (acked, total)
    ha: HaOut | None = None  # failover protection and whether it holds (None: off)


def _host(h: Host) -> HostCard:
    pnodes = tuple(
        PnodeBar(p.index, p.capacity_mib, p.allocated_mib, p.claimed_mib) for p in h.pnodes
    )
    return HostCard(h.id, h.name, h.state, bool(h.drift_flagged), h.distances, pnodes)


def _domain(d: Domain) -> DomainLine:
    return DomainLine(
        id=d.id,
        name=d.name,
        host_id=d.host_id,
        state=d.state,
        target_mib=d.target_mib,
        dynamic_min_mib=d.dynamic_min_mib,
        dynamic_max_mib=d.dynamic_max_mib,
        uncooperative=bool(d.uncooperative),
        vnodes=tuple(VnodeLine(vn.actual_mib) for vn in d.vnodes),
    )


def _migration(m: Migration) -> MigrationLine:
    return MigrationLine(
        id=m.id,
        domain_id=m.domain_id,
        source_host_id=m.source_host_id,
        destination_host_id=m.destination_host_id,
        strategy=m.strategy,
        state=m.state,
        plan=dict(m.plan or {}),
    )


def topology(session: Session, max_hosts: int, recent_migrations: int, now: datetime) -> Topology:
    """The first `max_hosts` hosts, every domain, and the migrations in flight then the
    `recent_migrations` latest ended ones."""
    view = load_overview(session, max_hosts=max_hosts, recent_migrations=recent_migrations, now=now)
    return Topology(
        hosts=[_host(h) for h in view.hosts],
        domains=[_domain(d) for d in view.domains],
        backing=view.backing,
        claims=view.claims,
        migrations=[_migration(m) for m in view.migrations],
        steps=view.steps,
        ha=failover.ha_out(session, failover.cluster_settings(session)),
    )
