"""The accounting invariants, checked against the rows: recompute every pnode's accounting from
the backing and claims and compare with what `apply` materialized. It reads the database, so it
lives with the service's persistence (the tests' and benchmarks' shared helpers never import the
service). One copy for the tests (`audit`, strict, at rest) and the load benchmark (`audit_db`,
the checks that hold while claims expire under load)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.db.accounting import live_claim
from service.db.models import Backing, Claim, Domain, Pnode, Vnode
from service.db.session import make_engine, make_sessionmaker


def mib_by_pnode(
    s: Session, model: type[Backing] | type[Claim], *, live_at: datetime | None = None
) -> dict[tuple[str, int], int]:
    """Σ MiB of backing or claim rows per (host, pnode), straight from the rows (claims: only
    those still live at `live_at`, when given)."""
    query = select(model.host_id, model.pnode, func.sum(model.mib))
    if live_at is not None:
        query = query.where(live_claim(live_at))
    rows = s.execute(query.group_by(model.host_id, model.pnode)).all()
    return {(h, p): int(m) for h, p, m in rows}


def vcpus_by_home(s: Session) -> dict[tuple[str, int], int]:
    """Σ vCPUs of the vnodes homed on each (host, pnode), straight from the rows."""
    rows = s.execute(
        select(Domain.host_id, Vnode.home_pnode, func.sum(Vnode.vcpu_count))
        .join(Vnode, Vnode.domain_id == Domain.id)
        .where(Domain.host_id.is_not(None), Vnode.home_pnode.is_not(None))
        .group_by(Domain.host_id, Vnode.home_pnode)
    ).all()
    return {(str(h), int(p)): int(n) for h, p, n in rows if p is not None}


def audit_session(s: Session) -> dict[str, int]:
    """Assert allocated == Σ backing, claimed == Σ claims, no pnode overcommitted, and every
    domain's vnode targets summing to its target. Returns totals for further checks."""
    backing = mib_by_pnode(s, Backing)
    claims = mib_by_pnode(s, Claim)
    load = vcpus_by_home(s)
    for pn in s.scalars(select(Pnode)).all():
        key = (pn.host_id, pn.index)
        assert pn.allocated_mib == backing.get(key, 0), f"allocated differs on {key}"
        assert pn.load_vcpus == load.get(key, 0), f"vCPU load differs on {key}"
        assert pn.claimed_mib == claims.get(key, 0), f"claimed differs on {key}"
        assert pn.allocated_mib + pn.claimed_mib <= pn.capacity_mib, f"overcommitted {key}"
    targets = dict(
        s.execute(
            select(Vnode.domain_id, func.sum(Vnode.target_mib))
            .join(Domain, Vnode.domain_id == Domain.id)
            .where(Domain.state == "running")
            .group_by(Vnode.domain_id)
        ).all()
    )
    for d in s.scalars(select(Domain).where(Domain.state == "running")).all():
        total = targets.get(d.id)
        assert total == d.target_mib, f"domain {d.name}: vnode targets {total} != {d.target_mib}"
    return {"backing": sum(backing.values()), "claims": sum(claims.values())}


def audit(factory: sessionmaker[Session]) -> dict[str, int]:
    with factory() as s:
        return audit_session(s)


def audit_db(db_url: str) -> list[str]:
    """The materialized pnode columns against the rows they summarize (backing, live claims),
    as problems rather than assertions: what the load benchmark reports while it runs."""
    problems: list[str] = []
    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine)() as s:
            backing = mib_by_pnode(s, Backing)
            claims = mib_by_pnode(s, Claim, live_at=datetime.now(UTC))
            for pn in s.scalars(select(Pnode)).all():
                key = (pn.host_id, pn.index)
                if pn.allocated_mib < backing.get(key, 0):
                    problems.append(f"{key}: allocated {pn.allocated_mib} < backing {backing[key]}")
                if pn.claimed_mib != claims.get(key, 0):
                    problems.append(f"{key}: claimed {pn.claimed_mib} != claims {claims.get(key)}")
                if pn.allocated_mib + pn.claimed_mib > pn.capacity_mib:
                    problems.append(f"{key}: overcommitted")
    finally:
        engine.dispose()
    return problems
