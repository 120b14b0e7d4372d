"""A domain read as plain rows: what a list page builds instead of ORM objects.

`views.domain_out` and `domains.backing_of` take these or ORM rows alike (`DomainRow`): building
50 domains and their ~450 vnodes through the ORM cost a list page more than its SQL did.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.db.models import Domain


@dataclass(frozen=True, slots=True)
class ListedVnode:
    index: int
    size_mib: int
    vcpus: list[int]
    target_mib: int
    actual_mib: int | None
    home_pnode: int | None
    guest_visible_mib: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ListedDomain:
    id: str
    name: str
    host_id: str | None
    state: str
    policy: str
    block_mib: int
    static_max_mib: int
    dynamic_min_mib: int
    dynamic_max_mib: int
    target_mib: int
    distances: list[list[int]]
    uncooperative: bool
    step_failure: dict[str, Any] | None
    external_id: str | None
    labels: dict[str, str]
    version: int
    created_at: datetime
    vnodes: list[ListedVnode]


# What a domain's view reads: an ORM row, or a list page's plain record.
DomainRow = Domain | ListedDomain
