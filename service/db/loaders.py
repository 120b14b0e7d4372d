"""Load a host's accounting in a fixed number of statements, whatever its size.

Three statements for a whole host: the host row (locked when writing) with its pnodes, the
domains on it with their vnodes, and their backing rows with the live claims. A write to one
domain loads that domain with its backing and the claims; the rest of the host is its locked
counters less that domain's charges, so the cost does not grow with the host's other domains.
Everything the engine needs is then numpy.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import numpy as np
from sqlalchemy import (
    BigInteger,
    Integer,
    Select,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session, contains_eager, defer, joinedload

from service.db.accounting import HostAccounting, OtherDomains, live_claim
from service.db.models import Backing, Claim, ClusterSettings, Domain, Host, Pnode, Vnode
from service.engine.accounting import charge_mib


def host_stmt(lock: bool) -> Select[Host]:
    """The host with its pnodes in one statement; locking both when writing.

    The pnode rows are locked with the host, not only read with it: under READ COMMITTED a
    `FOR UPDATE` that waited for another writer re-reads only the rows it locks, and returns the
    others as they were when it started. Pnode counters read that way were stale by one squeeze,
    and a writer that compared its new counters with them skipped a write that was needed (the
    concurrent-squeeze drift). `populate_existing` refreshes rows this session already held.
    """
    if not lock:
        return select(Host).options(joinedload(Host.pnodes))
    return (
        select(Host)
        .join(Host.pnodes)
        .options(contains_eager(Host.pnodes))
        .order_by(Host.id, Pnode.index)
        .with_for_update(of=[Host, Pnode])
        .execution_options(populate_existing=True)
    )


def _claims_stmt(host_id: str, now: datetime) -> Select[str, int, int, int]:
    """Live claims per pnode as (NULL, -1, pnode, MiB) rows, to follow backing rows."""
    return (
        select(
            literal(None, String()),
            literal(-1, Integer()),
            Claim.pnode,
            cast(func.sum(Claim.mib), BigInteger()),
        )
        .where(Claim.host_id == host_id, live_claim(now))
        .group_by(Claim.pnode)
    )


_FULL = (joinedload(Domain.vnodes),)
_LEAN = (
    joinedload(Domain.vnodes).defer(Vnode.vcpus, raiseload=True),
    defer(Domain.labels, raiseload=True),
    defer(Domain.distances, raiseload=True),
)


def load_host_accounting(
    session: Session,
    host_id: str,
    *,
    lock: bool,
    now: datetime,
    host: Host | None = None,
    lean: bool = False,
) -> HostAccounting | None:
    """Three statements: the host with its pnodes (locked when writing), the domains with their
    vnodes, and backing plus the claims live at `now` (the request's clock). `host`: already
    loaded (and locked) by the caller. `lean`: without the JSON columns that only topology and
    views read (labels, distances, vCPU ids): a report touches 20 domains every 10 s and needs
    none of them; reading one then raises instead of querying."""
    if host is None:
        host = session.scalars(host_stmt(lock).where(Host.id == host_id)).unique().one_or_none()
    if host is None:
        return None
    # Unlocked (read-only) callers run each statement on its own READ COMMITTED snapshot: a
    # domain deleted between the two statements arrives without vnodes. It no longer exists.
    domains = [
        d
        for d in session.scalars(
            select(Domain)
            .where(Domain.host_id == host_id)
            .options(*(_LEAN if lean else _FULL))
            .order_by(Domain.created_at, Domain.id)
            .execution_options(populate_existing=lock)
        )
        .unique()
        .all()
        if d.vnodes
    ]
    p = len(host.pnodes)
    backing = {d.id: np.zeros((len(d.vnodes), p), dtype=np.int64) for d in domains}
    claimed = np.zeros(p, dtype=np.int64)
    rows = session.execute(
        select(Backing.domain_id, Backing.vnode, Backing.pnode, Backing.mib)
        .where(Backing.host_id == host_id)
        .union_all(_claims_stmt(host_id, now))
    ).all()
    for domain_id, vnode, pnode, mib in rows:
        if vnode < 0:
            claimed[pnode] = mib
        elif domain_id in backing:
            backing[domain_id][vnode, pnode] = mib
    return HostAccounting(host=host, domains=domains, backing=backing, claimed_mib=claimed)


# Built once: executing a prebuilt statement reuses its memoized cache key and compiled form.
LOCK_DOMAIN_HOST = (
    host_stmt(lock=True)
    .join(Domain, Domain.host_id == Host.id)
    .where(Domain.id == bindparam("b_domain"))
)
# Whether failover protection may be on: 0 only when `cluster_settings.ha` is SQL NULL or JSON
# null (what `failover.admit` reads as off), 1 for anything else.
_HA_SET = case(
    (ClusterSettings.ha.is_(None), 0), (cast(ClusterSettings.ha, Text()) == "null", 0), else_=1
)
# The domain's backing cells (vnode, pnode, MiB), the host's live claims (_CLAIM_ROW, pnode,
# MiB) and the protection's state (_PROTECTION_ROW, 0, 0 or 1).
_CLAIM_ROW = -1
_PROTECTION_ROW = -2
DOMAIN_CELLS = union_all(
    select(Backing.vnode, Backing.pnode, Backing.mib).where(
        Backing.domain_id == bindparam("b_domain"), Backing.host_id == bindparam("b_host")
    ),
    select(literal(_CLAIM_ROW, Integer()), Claim.pnode, cast(func.sum(Claim.mib), BigInteger()))
    .where(Claim.host_id == bindparam("b_host"), live_claim(bindparam("b_now")))
    .group_by(Claim.pnode),
    select(
        literal(_PROTECTION_ROW, Integer()), literal(0, Integer()), cast(_HA_SET, BigInteger())
    ).where(ClusterSettings.id == 1),
).subquery("cells")
# The domain with its vnodes (ORM rows, refreshed) and, beside them, the rows above: each on its
# vnode's row (backing cells) or on vnode 0's (the host's rows), a vnode without cells on a
# row of its own. One statement under the lock, so one snapshot for the domain and its cells.
_DOMAIN_ON_HOST = (
    select(Domain)
    .join(Domain.vnodes)
    .outerjoin(
        DOMAIN_CELLS,
        or_(
            DOMAIN_CELLS.c.vnode == Vnode.index,
            and_(DOMAIN_CELLS.c.vnode < 0, Vnode.index == 0),
        ),
    )
    .where(Domain.id == bindparam("b_domain"), Domain.host_id == bindparam("b_host"))
    .options(contains_eager(Domain.vnodes))
    .add_columns(DOMAIN_CELLS.c.vnode, DOMAIN_CELLS.c.pnode, DOMAIN_CELLS.c.mib)
    .order_by(Vnode.index)
    .execution_options(populate_existing=True)
)


def load_domain_state(
    session: Session, host: Host, domain_id: str, now: datetime
) -> tuple[HostAccounting | None, bool]:
    """The state of a locked host for a write to one of its domains, in one more statement,
    and whether failover protection was off when it ran (under the host lock,
    in the write's transaction): a raise then needs no statement of its own to learn it
    (`failover.admit`'s `protection_off`).

    Only that domain is loaded, as ORM rows with its backing. The host's other domains are the
    locked pnode counters less this domain's own charges and vCPUs: `apply` keeps the counters
    equal to the sum over the host's domains, so a write to one domain reads nothing of the
    others. Counters that would leave the others negative (they never should) are not trusted:
    the others are then read row by row (`load_host_accounting`).
    None when the domain is not (or no longer) on this host.
    """
    params = {"b_domain": domain_id, "b_host": host.id, "b_now": now}
    # unique(): rows are distinct but for vnodes without cells (all NULL beside the domain).
    rows = session.execute(_DOMAIN_ON_HOST, params).unique().all()
    if not rows:
        return None, False
    domain: Domain = rows[0][0]
    state, protection_off = domain_state(host, domain, (row[1:] for row in rows))
    if state is None:
        whole = load_host_accounting(session, host.id, lock=True, host=host, now=now)
        if whole is None or whole.domain(domain_id) is None:
            return None, False
        return whole, protection_off
    return state, protection_off


def domain_state(
    host: Host, domain: Domain, cells: Iterable[tuple[int | None, int | None, int | None]]
) -> tuple[HostAccounting | None, bool]:
    """A write's state from the locked host and the domain's cells (`DOMAIN_CELLS`: backing
    cells, live claims, the protection's state), and whether failover protection was off. The
    state is None when the stored counters cannot be trusted (the others would be negative):
    the caller then reads the whole host."""
    p, k = len(host.pnodes), len(domain.vnodes)
    x = np.zeros((k, p), dtype=np.int64)
    claimed = np.zeros(p, dtype=np.int64)
    protection_off = False
    for vnode, pnode, mib in cells:
        if vnode is None or pnode is None or mib is None:
            continue
        if vnode == _PROTECTION_ROW:
            protection_off = mib == 0
        elif vnode == _CLAIM_ROW:
            claimed[pnode] = mib
        elif vnode < k:
            x[vnode, pnode] = mib
    home = np.array([-1 if v.home_pnode is None else v.home_pnode for v in domain.vnodes])
    actual = np.array([-1 if v.actual_mib is None else v.actual_mib for v in domain.vnodes])
    own = charge_mib(backing_mib=x[None], actual_mib=actual[None], home=np.maximum(home, 0)[None])
    homed = home >= 0
    own_load = np.bincount(
        home[homed], weights=np.array([v.vcpu_count for v in domain.vnodes])[homed], minlength=p
    ).astype(np.int64)
    stored = np.array([(pn.allocated_mib, pn.load_vcpus) for pn in host.pnodes], dtype=np.int64)
    rest_alloc = stored[:, 0] - own[0].sum(axis=0)
    rest_load = stored[:, 1] - own_load
    if (rest_alloc < 0).any() or (rest_load < 0).any():
        return None, protection_off
    state = HostAccounting(
        host=host,
        domains=[domain],
        backing={domain.id: x},
        claimed_mib=claimed,
        others=OtherDomains(allocated_mib=rest_alloc, load_vcpus=rest_load),
    )
    return state, protection_off
