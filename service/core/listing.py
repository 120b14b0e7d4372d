"""A page of domains for the list route, read as plain rows.

Three statements in one read session: the page of domains (the filters, a keyset on
(created_at, id)), their vnodes, their backing with their hosts' pnode counts. The rows become
small frozen records (`core/rows.py`), not ORM objects."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.core.domains import backing_and_agents
from service.core.rows import ListedDomain, ListedVnode
from service.core.views import I64, domain_out
from service.db.filters import filtered
from service.db.models import Domain
from service.db.pagination import fetch_row_page, next_cursor
from service.db.tables import DOMAINS, VNODES
from service.schemas.common import Page
from service.schemas.domains import DomainOut

_DOMAIN_COLUMNS = [DOMAINS.c[f] for f in ListedDomain.__dataclass_fields__ if f != "vnodes"]
_VNODE_ROWS = select(
    VNODES.c.domain_id, *(VNODES.c[f] for f in ListedVnode.__dataclass_fields__)
).order_by(VNODES.c.domain_id, VNODES.c.index)


def _out(d: ListedDomain, backing: tuple[I64, int] | None, host_agent: str | None) -> DomainOut:
    x, n_pnodes = backing if backing is not None else (None, 0)
    return domain_out(d, x, n_pnodes, host_agent)


def list_domains(
    session: Session,
    cursor: str | None,
    limit: int,
    *,
    host_id: str | None,
    name: str | None,
    external_id: str | None,
    labels: Sequence[tuple[str, str]],
) -> Page[DomainOut]:
    stmt = filtered(
        select(*_DOMAIN_COLUMNS), Domain, name=name, external_id=external_id, labels=labels
    )
    if host_id is not None:
        stmt = stmt.where(Domain.host_id == host_id)
    rows, more = fetch_row_page(session, stmt, Domain.created_at, Domain.id, cursor, limit)
    vnodes: defaultdict[str, list[ListedVnode]] = defaultdict(list)
    if rows:
        ids = [r.id for r in rows]
        for v in session.execute(_VNODE_ROWS.where(VNODES.c.domain_id.in_(ids))):
            vnodes[v[0]].append(ListedVnode(*v[1:]))
    page = [ListedDomain(**r._mapping, vnodes=vnodes[r.id]) for r in rows]
    backing, agents = backing_and_agents(session, page)
    return Page[DomainOut](
        items=[_out(d, backing.get(d.id), agents.get(d.host_id or "")) for d in page],
        next_cursor=next_cursor(page, more),
    )
