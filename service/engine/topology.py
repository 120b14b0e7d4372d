"""Physical and virtual NUMA topologies, validated the way firmware and Xen validate them.

Validation collects *every* issue instead of stopping at the first, because the API turns a
``TopologyError`` into one 422 response listing all bad fields.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .errors import InputError, Issue, TopologyError

__all__ = [
    "MAX_PNODES",
    "MAX_VNODES",
    "PAGES_PER_MIB",
    "PhysicalTopology",
    "VirtualTopology",
    "physical_from_lists",
    "validate_slit",
    "virtual_from_lists",
]

Loc = tuple[str | int, ...]
I64 = NDArray[np.int64]

MAX_PNODES = 64
MAX_VNODES = 32  # Xen's vnuma limit
PAGES_PER_MIB = 256  # 4 KiB pages
SLIT_LOCAL = 10
SLIT_MIN_REMOTE = 11
SLIT_MAX_REMOTE = 254  # 255 means "unreachable" in ACPI and is not allowed here
MAX_MIB = 1 << 31  # 2 PiB; keeps products of two MiB quantities inside int64


def _is_int(x: object) -> bool:
    # bool is an int subclass, and JSON true must not pass as distance 1.
    return isinstance(x, int | np.integer) and not isinstance(x, bool | np.bool_)


def _as_list(x: object) -> list[object] | None:
    if isinstance(x, np.ndarray):
        return list(x.tolist()) if x.ndim >= 1 else None
    if isinstance(x, list | tuple):
        return list(x)
    return None


def validate_slit(
    distances: object, n: int | None = None, loc_prefix: Loc = ("distances",)
) -> tuple[Issue, ...]:
    """Check an ACPI SLIT-like matrix and return every issue (empty tuple when valid).

    Never raises on garbage: the input comes straight from JSON bodies.
    """
    issues: list[Issue] = []
    rows = _as_list(distances)
    if rows is None:
        return (Issue(loc=loc_prefix, msg="must be a list of lists of integers"),)
    size = len(rows) if n is None else n
    if len(rows) != size:
        issues.append(Issue(loc=loc_prefix, msg=f"must have {size} rows, got {len(rows)}"))
    if size == 0:
        issues.append(Issue(loc=loc_prefix, msg="must not be empty"))
    for i, row_obj in enumerate(rows):
        row = _as_list(row_obj)
        if row is None:
            issues.append(Issue(loc=(*loc_prefix, i), msg="must be a list of integers"))
            continue
        if len(row) != size:
            issues.append(
                Issue(loc=(*loc_prefix, i), msg=f"must have {size} entries, got {len(row)}")
            )
        for j, d in enumerate(row):
            loc = (*loc_prefix, i, j)
            if not _is_int(d):
                issues.append(Issue(loc=loc, msg="must be an integer"))
                continue
            dv = int(d)  # type: ignore[call-overload]
            if i == j:
                if dv != SLIT_LOCAL:
                    issues.append(
                        Issue(loc=loc, msg=f"local distance must be {SLIT_LOCAL}, got {dv}")
                    )
            elif not SLIT_MIN_REMOTE <= dv <= SLIT_MAX_REMOTE:
                issues.append(
                    Issue(
                        loc=loc,
                        msg=f"remote distance must be in {SLIT_MIN_REMOTE}..{SLIT_MAX_REMOTE}, "
                        f"got {dv}",
                    )
                )
    return tuple(issues)


def _int_field(value: object, loc: Loc, issues: list[Issue], lo: int, hi: int) -> int | None:
    if not _is_int(value):
        issues.append(Issue(loc=loc, msg="must be an integer"))
        return None
    v: int = int(value)  # type: ignore[call-overload]
    if not lo <= v <= hi:
        issues.append(Issue(loc=loc, msg=f"must be in {lo}..{hi}, got {v}"))
        return None
    return v


def _frozen(a: NDArray[np.int64]) -> I64:
    out = np.array(a, dtype=np.int64, copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False, kw_only=True)
class PhysicalTopology:
    """A host's pnodes; arrays are read-only so a topology can be shared safely."""

    memory_mib: I64
    reserved_mib: I64
    cpus: I64
    distances: I64

    @property
    def n_pnodes(self) -> int:
        return int(self.memory_mib.shape[0])

    @property
    def capacity_mib(self) -> I64:
        """Memory guests may use: the hypervisor and dom0 keep ``reserved_mib``."""
        return self.memory_mib - self.reserved_mib


def physical_from_lists(
    *, memory_mib: object, reserved_mib: object, cpus: object, distances: object
) -> PhysicalTopology:
    """Build a validated ``PhysicalTopology`` from JSON-ish lists; raise with every issue."""
    issues: list[Issue] = []
    mem = _as_list(memory_mib)
    res = _as_list(reserved_mib)
    cp = _as_list(cpus)
    if mem is None:
        raise TopologyError((Issue(loc=("pnodes",), msg="memory_mib must be a list"),))
    n = len(mem)
    if not 1 <= n <= MAX_PNODES:
        issues.append(Issue(loc=("pnodes",), msg=f"must have 1..{MAX_PNODES} pnodes, got {n}"))
    for name, lst in (("reserved_mib", res), ("cpus", cp)):
        if lst is None or len(lst) != n:
            issues.append(Issue(loc=("pnodes",), msg=f"{name} must be a list of {n} integers"))
    mem_v: list[int] = []
    res_v: list[int] = []
    cpu_v: list[int] = []
    for p in range(n):
        m = _int_field(mem[p], ("pnodes", p, "memory_mib"), issues, 1, MAX_MIB)
        r = None
        if res is not None and len(res) == n:
            r = _int_field(res[p], ("pnodes", p, "reserved_mib"), issues, 0, MAX_MIB)
            if m is not None and r is not None and r >= m:
                issues.append(
                    Issue(loc=("pnodes", p, "reserved_mib"), msg="must be below memory_mib")
                )
        c = None
        if cp is not None and len(cp) == n:
            c = _int_field(cp[p], ("pnodes", p, "cpus"), issues, 1, 1 << 20)
        mem_v.append(m or 0)
        res_v.append(r or 0)
        cpu_v.append(c or 0)
    issues.extend(validate_slit(distances, n, ("distances",)))
    if issues:
        raise TopologyError(tuple(issues))
    dist = np.array(distances, dtype=np.int64)
    return PhysicalTopology(
        memory_mib=_frozen(np.array(mem_v, dtype=np.int64)),
        reserved_mib=_frozen(np.array(res_v, dtype=np.int64)),
        cpus=_frozen(np.array(cpu_v, dtype=np.int64)),
        distances=_frozen(dist),
    )


@dataclass(frozen=True, eq=False, kw_only=True)
class VirtualTopology:
    """What the guest sees (SRAT/SLIT): fixed for the guest's lifetime, so validated strictly."""

    size_mib: I64
    vcpu_vnode: I64
    distances: I64
    block_mib: int

    @property
    def n_vnodes(self) -> int:
        return int(self.size_mib.shape[0])

    @property
    def static_max_mib(self) -> int:
        return int(self.size_mib.sum())

    def vcpu_count(self) -> I64:
        """vCPU counts weight the distortion metric: more vCPUs, more accesses from that vnode."""
        return np.bincount(self.vcpu_vnode, minlength=self.n_vnodes).astype(np.int64)

    def memranges(self) -> I64:
        """(V, 2) ``[start_pfn, end_pfn)``: vnodes laid out in order from PFN 0, as in the SRAT."""
        pages = self.size_mib * PAGES_PER_MIB
        end = np.cumsum(pages)
        return np.stack([end - pages, end], axis=1).astype(np.int64)

    def plugged_blocks(self, targets_mib: NDArray[np.integer]) -> I64:
        """Whole blocks are plugged from the bottom; the balloon covers the rest of the last one."""
        t = np.asarray(targets_mib, dtype=np.int64)
        if t.shape != self.size_mib.shape:
            raise InputError(f"targets_mib must have shape {self.size_mib.shape}")
        if (t < 0).any() or (t > self.size_mib).any():
            raise InputError("targets_mib must be within 0..size_mib per vnode")
        return -(-t // self.block_mib)

    def block_pfn_ranges(
        self, vnode: int, first_block: int, n_blocks: int
    ) -> list[tuple[int, int]]:
        """PFN ranges of hotplug blocks ``first_block..first_block+n_blocks-1`` of one vnode."""
        if not 0 <= vnode < self.n_vnodes:
            raise InputError(f"vnode {vnode} out of range")
        total = int(self.size_mib[vnode]) // self.block_mib
        if first_block < 0 or n_blocks < 0 or first_block + n_blocks > total:
            raise InputError(f"blocks {first_block}+{n_blocks} outside vnode {vnode} ({total})")
        base = int(self.memranges()[vnode, 0])
        step = self.block_mib * PAGES_PER_MIB
        starts = base + step * np.arange(first_block, first_block + n_blocks, dtype=np.int64)
        return [(int(s), int(s) + step) for s in starts.tolist()]


def _block_size(block_mib: object, issues: list[Issue]) -> int | None:
    """The hotplug block size if valid (a power of two up to MAX_MIB), else None + issue."""
    if not _is_int(block_mib):
        issues.append(Issue(loc=("block_mib",), msg="must be an integer"))
        return None
    b: int = int(block_mib)  # type: ignore[call-overload]
    if b <= 0 or b & (b - 1) or b > MAX_MIB:
        issues.append(Issue(loc=("block_mib",), msg=f"must be a positive power of two, got {b}"))
        return None
    return b


def _vnode_sizes(sizes: list[object], block: int | None, issues: list[Issue]) -> list[int]:
    """Each vnode's size (0 where invalid); sizes must be positive multiples of the block."""
    size_v: list[int] = []
    for v, s in enumerate(sizes):
        sv = _int_field(s, ("vnodes", v, "size_mib"), issues, 1, MAX_MIB)
        if sv is not None and block is not None and sv % block:
            issues.append(
                Issue(
                    loc=("vnodes", v, "size_mib"),
                    msg=f"must be a multiple of block_mib ({block})",
                )
            )
        size_v.append(sv or 0)
    return size_v


def _vcpu_owners(vlist: list[object] | None, k: int, issues: list[Issue]) -> dict[int, int]:
    """vCPU id -> vnode; every vnode needs a vCPU, every id one vnode, ids 0..n-1 no gaps."""
    owner: dict[int, int] = {}
    if vlist is None or len(vlist) != k:
        issues.append(Issue(loc=("vnodes",), msg=f"vcpus must be a list of {k} lists"))
        return owner
    for v, ids_obj in enumerate(vlist):
        ids = _as_list(ids_obj)
        if ids is None:
            issues.append(Issue(loc=("vnodes", v, "vcpus"), msg="must be a list of vCPU ids"))
            continue
        if not ids:
            issues.append(
                Issue(loc=("vnodes", v, "vcpus"), msg="each vnode needs at least one vCPU")
            )
        for i, c in enumerate(ids):
            cid = _int_field(c, ("vnodes", v, "vcpus", i), issues, 0, 4095)
            if cid is None:
                continue
            if cid in owner:
                issues.append(
                    Issue(
                        loc=("vnodes", v, "vcpus", i),
                        msg=f"vCPU {cid} already in vnode {owner[cid]}",
                    )
                )
            else:
                owner[cid] = v
    top = max(owner, default=-1) + 1
    missing = sorted(set(range(top)) - set(owner))
    if missing:
        issues.append(
            Issue(
                loc=("vnodes",),
                msg=f"vCPU ids must be 0..{top - 1} without gaps; missing {missing[:8]}",
            )
        )
    return owner


def _virtual_slit_issues(distances: object, k: int) -> tuple[Issue, ...]:
    """SLIT validity, plus Xen's rule that no local distance exceeds a remote one."""
    slit = validate_slit(distances, k, ("distances",))
    if slit:
        return slit
    # Redundant with 10 < 11 today, but it is Xen's stated rule and survives a looser SLIT.
    d = np.array(distances, dtype=np.int64)
    bad = np.argwhere(np.diag(d)[:, None] > d)
    return tuple(
        Issue(loc=("distances", int(i), int(j)), msg="local distance above a remote one")
        for i, j in bad.tolist()
    )


def virtual_from_lists(
    *, size_mib: object, vcpus: object, distances: object, block_mib: object = 128
) -> VirtualTopology:
    """Build a validated ``VirtualTopology``; ``vcpus[v]`` lists the vCPU ids of vnode v.

    Rules follow Xen's ``vnuma``: 1..32 vnodes, each with at least one vCPU, every vCPU id
    0..n-1 in exactly one vnode, SLIT-valid distances, sizes positive multiples of the block.
    """
    issues: list[Issue] = []
    block = _block_size(block_mib, issues)
    sizes = _as_list(size_mib)
    vlist = _as_list(vcpus)
    if sizes is None:
        raise TopologyError((*issues, Issue(loc=("vnodes",), msg="size_mib must be a list")))
    k = len(sizes)
    if not 1 <= k <= MAX_VNODES:
        issues.append(Issue(loc=("vnodes",), msg=f"must have 1..{MAX_VNODES} vnodes, got {k}"))
    size_v = _vnode_sizes(sizes, block, issues)
    owner = _vcpu_owners(vlist, k, issues)
    issues.extend(_virtual_slit_issues(distances, k))
    if issues:
        raise TopologyError(tuple(issues))
    vcpu_vnode = np.empty(len(owner), dtype=np.int64)
    for cid, v in owner.items():
        vcpu_vnode[cid] = v
    assert block is not None
    return VirtualTopology(
        size_mib=_frozen(np.array(size_v, dtype=np.int64)),
        vcpu_vnode=_frozen(vcpu_vnode),
        distances=_frozen(np.array(distances, dtype=np.int64)),
        block_mib=block,
    )
