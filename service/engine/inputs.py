"""Coercion of the engine's array arguments, shared by every entry point."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .errors import InputError


def int_array(a: object, name: str, ndim: int) -> NDArray[np.int64]:
    """``a`` as int64 with ``ndim`` dimensions, or InputError naming the argument.

    No copy when ``a`` already is int64: callers copy before they modify."""
    arr = np.asarray(a)
    if arr.ndim != ndim:
        raise InputError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    # dtype.kind: signed or unsigned integers, what np.issubdtype(.., np.integer) accepts,
    # at a fifth of its cost (it runs several times a request).
    if arr.size and arr.dtype.kind not in "iu":
        raise InputError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)
