"""Plain input model of the exporters.

The exporters take frozen dataclasses of plain Python ints and tuples, not numpy arrays or ORM rows,
so that they stay independent of the engine and the database (DESIGN.md: dependencies point one
way, api -> exports) and so that a caller can build an export from any source (an API response, a
stored row, a test) without dragging those layers along.

Two kinds of failure are kept apart on purpose:

* ``ValueError`` from the constructors: the data break an invariant that the engine guarantees
  (sums exact, vCPUs a partition, distance rows of length k, ...). That is a bug in the caller, and
  writing a config file from such data would hand a hypervisor something it rejects at boot or,
  worse, silently misreads.
* :class:`ExportError`: the data are valid but the *target format* cannot express them, e.g. a
  vnode backed by several pnodes in xl's vnuma. The HTTP layer maps it to 409 with ``reason``.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Iterable
from dataclasses import dataclass

from service.engine.topology import MAX_VNODES  # Xen's limit: 1 to 32 vnodes per domain

__all__ = ["ExportDomain", "ExportError", "ExportVnode", "compress_ranges"]


class ExportError(Exception):
    """The domain is valid but cannot be expressed in the requested format (HTTP 409).

    ``reason`` is a sentence meant for the operator: it names the offending vnode/pnodes and the
    rule of the target format, so the caller can decide to re-place the domain or pick a format.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def compress_ranges(ids: Iterable[int]) -> str:
    """Render integer ids as a range list such as ``"0-3,5"``.

    Both xl (``vcpus=`` in a vnode spec, parsed by xl's ``parse_range``) and libvirt (cpuset /
    nodeset syntax) accept this form; compressing keeps a 64-vCPU vnode on one readable line.
    Duplicates are ignored, order is normalised. An empty input gives ``""``.
    """
    ordered = sorted(set(ids))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        start = ordered[i]
        end = start
        while i + 1 < len(ordered) and ordered[i + 1] == end + 1:
            i += 1
            end = ordered[i]
        parts.append(str(start) if start == end else f"{start}-{end}")
        i += 1
    return ",".join(parts)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_int(value: object) -> bool:
    # bool is an int subclass; a True where a MiB count belongs is a bug, not a 1.
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class ExportVnode:
    """One virtual NUMA node as the exporters need it.

    ``size_mib`` is the vnode's fixed guest-physical span (its SRAT entry), ``target_mib`` its
    balloon target, ``backing_mib[p]`` the MiB of this vnode backed by pnode ``p`` of the current
    host (so ``sum(backing_mib) == target_mib``), ``home_pnode`` where its vCPUs run.
    """

    index: int
    size_mib: int
    vcpus: tuple[int, ...]
    distances: tuple[int, ...]
    target_mib: int
    home_pnode: int
    backing_mib: tuple[int, ...]  # MiB per pnode of the host

    def __post_init__(self) -> None:
        for field in ("index", "size_mib", "target_mib", "home_pnode"):
            value = getattr(self, field)
            _require(_is_int(value) and value >= 0, f"vnode {field} must be an int >= 0: {value!r}")
        _require(self.size_mib > 0, f"vnode {self.index}: size_mib must be > 0")
        for name in ("vcpus", "distances", "backing_mib"):
            values = getattr(self, name)
            _require(isinstance(values, tuple), f"vnode {self.index}: {name} must be a tuple")
            _require(
                all(_is_int(v) and v >= 0 for v in values),
                f"vnode {self.index}: {name} must hold ints >= 0",
            )
        _require(len(set(self.vcpus)) == len(self.vcpus), f"vnode {self.index}: duplicate vCPU")
        _require(
            0 <= self.target_mib <= self.size_mib,
            f"vnode {self.index}: target_mib {self.target_mib} outside [0, {self.size_mib}]",
        )
        _require(
            self.home_pnode < len(self.backing_mib),
            f"vnode {self.index}: home_pnode {self.home_pnode} is not a pnode of the host "
            f"({len(self.backing_mib)} pnodes)",
        )
        _require(
            sum(self.backing_mib) == self.target_mib,
            f"vnode {self.index}: backing_mib sums to {sum(self.backing_mib)}, "
            f"target_mib is {self.target_mib}",
        )

    @property
    def backing_pnodes(self) -> tuple[int, ...]:
        """Pnodes that hold some of this vnode's memory, ascending."""
        return tuple(p for p, mib in enumerate(self.backing_mib) if mib > 0)

    @property
    def placement_pnodes(self) -> tuple[int, ...]:
        """Pnodes this vnode's memory belongs on.

        The backing pnodes; for a vnode ballooned to zero (no backing at all) its home pnode, so
        that a format which needs a node for every vnode still gets the one its vCPUs run on.
        """
        return self.backing_pnodes or (self.home_pnode,)


@dataclass(frozen=True, slots=True)
class ExportDomain:
    """A domain's memory and virtual topology on its current host.

    Validated against DESIGN.md's invariants on construction: vnodes indexed 0..k-1 in order,
    distance rows of length k with 10 on the diagonal, every vCPU 0..n-1 in exactly one vnode,
    ``static_max_mib == sum(size_mib)``, ``target_mib == sum(vnode target_mib)``, all vnodes
    describing the same host (same number of pnodes). ``uuid`` is normalised to canonical form.
    """

    name: str
    uuid: str
    static_max_mib: int
    target_mib: int
    vnodes: tuple[ExportVnode, ...]
    #: The guest's memory hotplug block and its floor; only the complete libvirt domain (with
    #: one virtio-mem device per vnode) needs them.
    block_mib: int | None = None
    dynamic_min_mib: int | None = None

    def __post_init__(self) -> None:
        _require(isinstance(self.name, str) and self.name != "", "domain name must be non-empty")
        try:
            canonical = str(_uuid.UUID(self.uuid))
        except (ValueError, AttributeError, TypeError) as exc:
            raise ValueError(f"domain uuid is not a UUID: {self.uuid!r}") from exc
        object.__setattr__(self, "uuid", canonical)
        for field in ("static_max_mib", "target_mib"):
            value = getattr(self, field)
            _require(_is_int(value) and value >= 0, f"domain {field} must be an int >= 0")
        _require(isinstance(self.vnodes, tuple), "vnodes must be a tuple")
        k = len(self.vnodes)
        _require(1 <= k <= MAX_VNODES, f"a domain has 1 to {MAX_VNODES} vnodes, not {k}")
        _require(
            all(v.index == i for i, v in enumerate(self.vnodes)),
            "vnodes must be indexed 0..k-1 in order",
        )
        for v in self.vnodes:
            _require(
                len(v.distances) == k,
                f"vnode {v.index}: {len(v.distances)} distances for {k} vnodes",
            )
            _require(v.distances[v.index] == 10, f"vnode {v.index}: distance to itself must be 10")
        pnode_counts = {len(v.backing_mib) for v in self.vnodes}
        _require(len(pnode_counts) == 1, "all vnodes must give backing_mib for the same pnodes")
        all_vcpus = sorted(c for v in self.vnodes for c in v.vcpus)
        _require(
            all_vcpus == list(range(len(all_vcpus))) and all_vcpus != [],
            "every vCPU 0..n-1 must belong to exactly one vnode",
        )
        size_sum = sum(v.size_mib for v in self.vnodes)
        _require(
            self.static_max_mib == size_sum,
            f"static_max_mib {self.static_max_mib} != sum of vnode sizes {size_sum}",
        )
        target_sum = sum(v.target_mib for v in self.vnodes)
        _require(
            self.target_mib == target_sum,
            f"target_mib {self.target_mib} != sum of vnode targets {target_sum}",
        )

    @property
    def vcpu_count(self) -> int:
        """Total vCPUs: the sum over vnodes (they partition 0..n-1)."""
        return sum(len(v.vcpus) for v in self.vnodes)
