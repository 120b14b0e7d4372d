"""A host, its pnodes, a domain and its vnodes as plain objects: rows read on a plain connection.

A target write on the event loop (`core/target_on_loop.py`) reads these rows with Core
statements, then hands them to the same rules (`retarget`), the same `apply` and the same view
as the sessions' path. Mapped instances built by hand cost ~60 us a domain in SQLAlchemy's
attribute events; these cost a few. Each class carries every column of its table, under the
same name (`tests/api/test_target_on_loop.py` fails when a table gains one that is not here),
and the model's few derived values; the relationships the rules follow (`pnodes`, `vnodes`) are
plain lists. The callers cast them to the models: reading anything else raises AttributeError.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar


@dataclass(slots=True, kw_only=True)
class PlainPnode:
    host_id: str
    index: int
    memory_mib: int
    reserved_mib: int
    cpus: int
    allocated_mib: int
    claimed_mib: int
    observed_free_mib: int | None
    load_vcpus: int

    @property
    def capacity_mib(self) -> int:  # as `Pnode.capacity_mib`
        return self.memory_mib - self.reserved_mib


@dataclass(slots=True, kw_only=True)
class PlainHost:
    """A host's columns but `changed_xid` (deferred with raiseload on the model, too)."""

    id: str
    name: str
    state: str
    external_id: str | None
    labels: dict[str, str]
    evacuation_requested_at: datetime | None
    distances: list[list[int]]
    drift_flagged: bool
    recovery: dict[str, Any] | None
    observed_at: datetime | None
    agent: str | None
    created_at: datetime
    updated_at: datetime
    version: int
    pnodes: list[PlainPnode] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class PlainVnode:
    domain_id: str
    index: int
    size_mib: int
    vcpus: list[int]
    vcpu_count: int
    target_mib: int
    actual_mib: int | None
    guest_visible_mib: int | None
    home_pnode: int | None


@dataclass(slots=True, kw_only=True)
class PlainDomain:
    id: str
    name: str
    external_id: str | None
    labels: dict[str, str]
    host_id: str | None
    state: str
    policy: str
    block_mib: int
    static_max_mib: int
    dynamic_min_mib: int
    dynamic_max_mib: int
    target_mib: int
    distances: list[list[int]]
    from_template: bool
    uncooperative: bool
    step_failure: dict[str, Any] | None
    target_set_at: datetime
    last_progress_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int
    vnodes: list[PlainVnode] = field(default_factory=list)


R = TypeVar("R", PlainHost, PlainPnode, PlainDomain, PlainVnode)


def plain(cls: type[R], names: Sequence[str], row: Sequence[Any]) -> R:
    """A plain row from a row of its table's columns (`names`, in order): timestamps in UTC, as
    the ORM's `UTCDateTime` reads them back."""
    values: dict[str, Any] = {
        n: v.astimezone(UTC) if isinstance(v, datetime) else v
        for n, v in zip(names, row, strict=True)
    }
    return cls(**values)
