"""A target write's state read on a plain connection: the locked host and one domain.

The same two statements as the sessions' path (`loaders.LOCK_DOMAIN_HOST`, then the domain
with its vnodes and `loaders.DOMAIN_CELLS` under the lock), as Core selects whose rows become
`db/plain_rows.py`'s objects instead of mapped instances; the state is then built by the same
`loaders.domain_state`. Two statements, not one: under READ COMMITTED a `FOR UPDATE` that
waited re-reads only the rows it locks, so the domain is read after the lock is taken.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast as typed

from sqlalchemy import and_, bindparam, or_, select

from service.db.accounting import HostAccounting
from service.db.loaders import DOMAIN_CELLS, domain_state
from service.db.models import Domain, Host
from service.db.plain_rows import PlainDomain, PlainHost, PlainPnode, PlainVnode, plain
from service.db.raw import PlainTransaction
from service.db.tables import DOMAINS, HOSTS, PNODES, VNODES

_HOST_COLS = [c for c in HOSTS.c if c.name != "changed_xid"]
_HOST_NAMES = [c.name for c in _HOST_COLS]
_PNODE_NAMES = [c.name for c in PNODES.c]
_DOMAIN_NAMES = [c.name for c in DOMAINS.c]
_VNODE_NAMES = [c.name for c in VNODES.c]
_H, _P = len(_HOST_NAMES), len(_PNODE_NAMES)
_D, _V = len(_DOMAIN_NAMES), len(_VNODE_NAMES)

# The domain's host with its pnodes, both locked, in the order the sessions' path locks them.
_LOCK = (
    select(*_HOST_COLS, *PNODES.c)
    .join(DOMAINS, DOMAINS.c.host_id == HOSTS.c.id)
    .join(PNODES, PNODES.c.host_id == HOSTS.c.id)
    .where(DOMAINS.c.id == bindparam("b_domain"))
    .order_by(HOSTS.c.id, PNODES.c.index)
    .with_for_update(of=[HOSTS, PNODES])
)
# The domain, each vnode, and the cells beside them (see `loaders._DOMAIN_ON_HOST`).
_DOMAIN = (
    select(*DOMAINS.c, *VNODES.c, DOMAIN_CELLS.c.vnode, DOMAIN_CELLS.c.pnode, DOMAIN_CELLS.c.mib)
    .join(VNODES, VNODES.c.domain_id == DOMAINS.c.id)
    .outerjoin(
        DOMAIN_CELLS,
        or_(
            DOMAIN_CELLS.c.vnode == VNODES.c.index,
            and_(DOMAIN_CELLS.c.vnode < 0, VNODES.c.index == 0),
        ),
    )
    .where(DOMAINS.c.id == bindparam("b_domain"), DOMAINS.c.host_id == bindparam("b_host"))
    .order_by(VNODES.c.index)
)


async def load_target_state(
    tx: PlainTransaction, domain_id: str, now: datetime
) -> tuple[Domain, HostAccounting, bool] | None:
    """The domain, its locked host's state and whether failover protection was off, as
    `domains.lock_domain_host` loads them. None when the sessions' path must answer: no such
    domain, no host, moved meanwhile, or counters that cannot be trusted (it then reads the
    whole host)."""
    rows = await tx.rows(_LOCK, {"b_domain": domain_id})
    if not rows:
        return None
    host = _host(rows)
    params = {"b_domain": domain_id, "b_host": host.id, "b_now": now}
    cells = await tx.rows(_DOMAIN, params)
    if not cells:
        return None
    domain = _domain(cells)
    typed_host, typed_domain = typed(Host, host), typed(Domain, domain)
    state, protection_off = domain_state(typed_host, typed_domain, (r[_D + _V :] for r in cells))
    return None if state is None else (typed_domain, state, protection_off)


def _host(rows: list[tuple[object, ...]]) -> PlainHost:
    host = plain(PlainHost, _HOST_NAMES, rows[0][:_H])
    host.pnodes = [plain(PlainPnode, _PNODE_NAMES, row[_H : _H + _P]) for row in rows]
    return host


def _domain(rows: list[tuple[object, ...]]) -> PlainDomain:
    """The domain from the first row, its vnodes once each (a vnode's row repeats per cell)."""
    domain = plain(PlainDomain, _DOMAIN_NAMES, rows[0][:_D])
    last = -1
    for row in rows:
        if row[_D + 1] != last:  # the vnode's index: a new vnode
            domain.vnodes.append(plain(PlainVnode, _VNODE_NAMES, row[_D : _D + _V]))
            last = domain.vnodes[-1].index
    return domain
