"""The cluster: its settings row (block size, stored worst-case template) and the overview.

The settings row is read by `db.cluster.get_cluster` for every caller; here its absence becomes
the domain's error (a conflict: the migrations were not run), said once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from service.core import failover
from service.db.audit import record_event
from service.db.cluster import domain_count, get_cluster, hosts_by_state
from service.db.hosts import pnode_totals
from service.db.models import ClusterSettings
from service.errors import Conflict, InvalidInput, NotFound
from service.schemas.cluster import ClusterOut, ClusterPatch, ClusterPut
from service.schemas.squeeze import WorstCaseTemplateOut


def cluster_settings(session: Session, *, lock: bool = False) -> ClusterSettings:
    """The settings row; only a hand-edited database lacks it (the first migration inserts it)."""
    try:
        return get_cluster(session, lock=lock)
    except LookupError as exc:
        raise Conflict(str(exc)) from exc


def _overview(session: Session, row: ClusterSettings) -> ClusterOut:
    by_state = hosts_by_state(session)
    n_domains = domain_count(session)
    cap, alloc, claimed = pnode_totals(session)
    return ClusterOut(
        block_mib=row.block_mib,
        worst_case_template=row.worst_case_template,
        hosts=sum(by_state.values()),
        domains=n_domains,
        hosts_by_state=by_state,
        capacity_mib=cap,
        allocated_mib=alloc,
        claimed_mib=claimed,
        free_mib=cap - alloc - claimed,
        version=row.version,
        ha=failover.ha_out(session, row),
    )


def overview(session: Session) -> ClusterOut:
    """Settings and totals: hosts by state, domains, and memory over every pnode."""
    return _overview(session, cluster_settings(session))


def stored_template(session: Session) -> WorstCaseTemplateOut:
    row = cluster_settings(session)
    if row.worst_case_template is None:
        raise NotFound("no template yet; POST /v1/cluster/worst-case-template derives one")
    return WorstCaseTemplateOut.model_validate(row.worst_case_template)


def patch_cluster(session: Session, body: ClusterPatch, actor: str, now: datetime) -> ClusterOut:
    """`PATCH /v1/cluster`: the block size (as PUT) and failover protection, each when given."""
    if body.block_mib is not None:
        set_block_size(session, ClusterPut(block_mib=body.block_mib), actor, now)
    if "ha" in body.model_fields_set:
        failover.set_protection(session, body.ha, actor, now)
        session.flush()
    return _overview(session, cluster_settings(session))


def set_block_size(session: Session, body: ClusterPut, actor: str, now: datetime) -> ClusterOut:
    """Change the balloon block size: a power of two, and only while no domain exists (every
    domain's pools are counted in blocks of the size it was created with)."""
    if body.block_mib & (body.block_mib - 1):
        raise InvalidInput(
            f"block_mib must be a power of two, got {body.block_mib}",
            errors=[{"loc": ["body", "block_mib"], "msg": "must be a power of two"}],
        )
    row = cluster_settings(session, lock=True)
    if body.block_mib != row.block_mib and domain_count(session):
        raise Conflict("block_mib can only change while no domain exists")
    before = row.block_mib
    if body.block_mib != before:
        row.block_mib = body.block_mib
        row.updated_at = now
        record_event(
            session,
            actor,
            "cluster.block_changed",
            "cluster",
            None,
            before={"block_mib": before},
            after={"block_mib": body.block_mib},
            at=now,
        )
        session.flush()
    return _overview(session, row)
