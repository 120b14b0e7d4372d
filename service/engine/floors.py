"""What each vnode always keeps: its share of the domain's ``dynamic_min_mib``, rounded down to a
whole block, at least one block and at most its span.

That is the boot memory a libvirt/KVM export gives each guest cell (``exports.libvirt_domain``):
the hypervisor cannot unplug it (only virtio-mem device memory moves; the guest kernel refuses
its boot blocks), so a vnode target below it can never be reached. On a real guest such a
target stuck forever (the domain flagged uncooperative) and a migration's carried levels planned
a vnode at 0. Targets and plans keep every vnode at or above its floor.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["vnode_floor_mib"]


def vnode_floor_mib(
    size_mib: ArrayLike, *, dynamic_min_mib: int, static_max_mib: int, block_mib: int
) -> NDArray[np.int64]:
    """(V,) floors of one domain's vnodes (vectorized)."""
    size = np.asarray(size_mib, dtype=np.int64)
    if static_max_mib <= 0 or block_mib <= 0:
        return np.zeros_like(size)
    share = dynamic_min_mib * size // static_max_mib
    floor: NDArray[np.int64] = np.minimum(
        size, np.maximum(block_mib, share // block_mib * block_mib)
    )
    return floor
