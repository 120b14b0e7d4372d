"""What the failover planner takes: the hosts as (hosts x pnodes) matrices and the protected
domains as guest shapes, validated once.

Memory is integer MiB per pnode. For a host and a pnode:

* ``free_mib``: capacity minus what is committed now (backing and claims), as
  ``ClusterArrays.free_mib`` holds it;
* ``squeezable_mib``: what squeezing every domain of the host down to its ``dynamic_min`` would
  give back there (committed now minus committed at full squeeze, ``squeeze``'s gamma = 0).

A protected domain is a host index and a ``GuestShape``: the MiB each vnode needs to restart
(the vnode targets it ran with: a restart boots the guest at the size it had), its vCPUs per vnode
and virtual distances (for distortion, exactly as ``place`` weighs them) and an optional distortion
limit. No policy of the service bounds distortion today (``proportional``, ``faithful`` and the
others shape pool levels, not the mapping), so the limit is an input: ``None`` accepts any mapping
that fits, as ``place`` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.engine.errors import InputError
from service.engine.inputs import int_array

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

__all__ = ["FailoverHosts", "GuestShape", "ProtectedDomains", "protected_domains"]


@dataclass(frozen=True, kw_only=True, eq=False)
class GuestShape:
    """What one protected domain needs to restart; equal shapes are searched once.

    ``restart_mib`` (V,): MiB per vnode at restart; ``vcpu_count`` (V,); ``vdist`` (V, V);
    ``max_distortion``: largest distortion (SLIT units, ``place``'s definition) a restart may
    have, ``None`` for any."""

    restart_mib: IntArray
    vcpu_count: IntArray
    vdist: IntArray
    max_distortion: float | None = None

    def __post_init__(self) -> None:
        dem = int_array(self.restart_mib, "restart_mib", 1)
        v = dem.shape[0]
        if v == 0:
            raise InputError("a protected domain needs at least one vnode")
        cw = int_array(self.vcpu_count, "vcpu_count", 1)
        vd = int_array(self.vdist, "vdist", 2)
        if cw.shape != (v,) or vd.shape != (v, v):
            raise InputError(f"vcpu_count must be ({v},) and vdist ({v}, {v}) like restart_mib")
        if (dem < 0).any() or (cw < 0).any():
            raise InputError("restart_mib and vcpu_count must not be negative")
        lim = self.max_distortion
        if lim is not None and (not math.isfinite(lim) or lim < 0):
            raise InputError("max_distortion must be a finite number >= 0, or None")
        object.__setattr__(self, "restart_mib", dem)
        object.__setattr__(self, "vcpu_count", cw)
        object.__setattr__(self, "vdist", vd)

    def key(self) -> bytes:
        lim = b"-" if self.max_distortion is None else repr(float(self.max_distortion)).encode()
        return b"|".join(
            (self.restart_mib.tobytes(), self.vcpu_count.tobytes(), self.vdist.tobytes(), lim)
        )


@dataclass(frozen=True, kw_only=True, eq=False)
class ProtectedDomains:
    """The domains that must restart when their host fails: ``host`` (D,) index of the host
    each runs on, ``guest`` (D,) index into ``guests``."""

    host: IntArray
    guest: IntArray
    guests: tuple[GuestShape, ...]

    @property
    def n_domains(self) -> int:
        return int(self.host.shape[0])


def protected_domains(*, host: Sequence[int], guests: Sequence[GuestShape]) -> ProtectedDomains:
    """One entry per domain; equal guest shapes are stored once (the planner searches per shape)."""
    if len(host) != len(guests):
        raise InputError("give one guest shape per protected domain")
    keys: dict[bytes, int] = {}
    shapes: list[GuestShape] = []
    idx = np.empty(len(guests), dtype=np.int64)
    for i, g in enumerate(guests):
        k = g.key()
        if k not in keys:
            keys[k] = len(shapes)
            shapes.append(g)
        idx[i] = keys[k]
    return ProtectedDomains(
        host=np.asarray(host, dtype=np.int64).reshape(len(guests)), guest=idx, guests=tuple(shapes)
    )


@dataclass(frozen=True, kw_only=True, eq=False)
class FailoverHosts:
    """Every host that may fail or receive restarts, zero-padded past a host's pnodes like
    ``ClusterArrays``: ``free_mib`` and ``squeezable_mib`` (H, >= P), ``eligible`` (H,) (may
    receive restarts: connected and active), ``shape`` (H,) index into ``shapes`` (SLITs)."""

    free_mib: IntArray
    squeezable_mib: IntArray
    eligible: BoolArray
    shape: IntArray
    shapes: tuple[IntArray, ...]

    @property
    def n_hosts(self) -> int:
        return int(self.shape.shape[0])


def check_hosts(hosts: FailoverHosts) -> None:
    """Shapes, signs and indices, each failure saying which argument is wrong."""
    h = hosts.n_hosts
    width = max((s.shape[0] for s in hosts.shapes), default=0)
    for name in ("free_mib", "squeezable_mib"):
        arr = int_array(getattr(hosts, name), name, 2)
        if arr.shape[0] != h or arr.shape[1] < width:
            raise InputError(f"{name} must be (hosts={h}, >= {width}), got {arr.shape}")
        if (arr < 0).any():
            raise InputError(f"{name} must not be negative")
    if np.shape(hosts.eligible) != (h,):
        raise InputError(f"eligible must be ({h},), got {np.shape(hosts.eligible)}")
    for i, s in enumerate(hosts.shapes):
        if s.ndim != 2 or s.shape[0] != s.shape[1]:
            raise InputError(f"shapes[{i}] must be a square distance matrix")
    if h and (hosts.shape.min() < 0 or hosts.shape.max() >= len(hosts.shapes)):
        raise InputError("shape indices must point into shapes")


def check_domains(domains: ProtectedDomains, n_hosts: int) -> None:
    d = domains.n_domains
    if np.shape(domains.guest) != (d,):
        raise InputError(f"guest must be ({d},) like host")
    if d and (domains.host.min() < 0 or domains.host.max() >= n_hosts):
        raise InputError(f"every protected domain's host must index one of the {n_hosts} hosts")
    if d and (domains.guest.min() < 0 or domains.guest.max() >= len(domains.guests)):
        raise InputError("guest indices must point into guests")
