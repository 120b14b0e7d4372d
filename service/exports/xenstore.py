"""xenstore export: the balloon targets a Xen guest's balloon driver reads, in KiB.

Keys are **relative to the domain's xenstore home** ``/local/domain/<domid>/``: the domid is only
known on the host once the domain runs, and this control plane does not track it, so the host
agent prefixes the keys (e.g. ``xenstore-write /local/domain/7/memory/target 1572864``).

* ``memory/target`` and ``memory/static-max`` are the keys Xen's toolstack writes and Linux's
  xen-balloon driver watches; Xen stores memory in KiB, hence ``mib * 1024``.
* ``memory/vnode<N>/target`` carries the per-vnode balloon target that a NUMA-aware balloon
  driver needs (DESIGN.md: ballooning per node). Stock drivers ignore the extra keys, so the
  export is safe for guests without such a driver.

No pnode, host or host distance appears: the keys are readable by the guest, which must never
learn the physical topology (DESIGN.md, Privilege).
"""

from __future__ import annotations

from service.exports.model import ExportDomain

__all__ = ["KIB_PER_MIB", "to_xenstore", "xenstore_keys"]

KIB_PER_MIB = 1024


def _kib(mib: int) -> str:
    """MiB -> KiB as the decimal string xenstore stores."""
    return str(mib * KIB_PER_MIB)


def xenstore_keys(domain: ExportDomain) -> list[tuple[str, str]]:
    """``(relative key, value in KiB)`` pairs, domain keys first, then vnodes in index order."""
    target_kib = _kib(domain.target_mib)
    static_max_kib = _kib(domain.static_max_mib)
    keys = [("memory/target", target_kib), ("memory/static-max", static_max_kib)]
    keys.extend((f"memory/vnode{v.index}/target", _kib(v.target_mib)) for v in domain.vnodes)
    return keys


def to_xenstore(domain: ExportDomain) -> str:
    """One ``key = value`` line per key (values in KiB), ending with a newline."""
    return "".join(f"{key} = {value}\n" for key, value in xenstore_keys(domain))
