"""A page of domains for the list route: the filters, the keyset page and the views.

One read session: the page of domains with their vnodes (two statements), their backing (one),
then the views, so the route is one hop to the thread pool and a pre-serialized answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from service.core.domains import backing_of
from service.core.views import domain_out
from service.db.filters import filtered
from service.db.models import Domain
from service.db.pagination import fetch_page, next_cursor
from service.schemas.common import Page
from service.schemas.domains import DomainOut


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
        select(Domain).options(selectinload(Domain.vnodes)),
        Domain,
        name=name,
        external_id=external_id,
        labels=labels,
    )
    if host_id is not None:
        stmt = stmt.where(Domain.host_id == host_id)
    page, more = fetch_page(session, stmt, Domain.created_at, Domain.id, cursor, limit)
    backing = backing_of(session, page)
    return Page[DomainOut](
        items=[domain_out(d, *backing.get(d.id, (None, 0))) for d in page],
        next_cursor=next_cursor(page, more),
    )
