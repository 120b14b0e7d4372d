"""Quality metrics of a backing matrix, shared by distribute, place and migration plans.

``distortion`` is defined once here so that every module ranks backings the same way.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "cost_matrix",
    "cost_matrix_many",
    "distortion",
    "distortion_many",
    "remote_fraction",
    "remote_fraction_many",
]

F64 = NDArray[np.float64]


def cost_matrix(
    *,
    vdist: NDArray[np.integer],
    pdist: NDArray[np.integer],
    home: NDArray[np.integer],
    vcpu_count: NDArray[np.integer] | NDArray[np.floating],
) -> F64:
    """(V, P) cost of backing one MiB of pool u on pnode p: vCPU-weighted belief error.

    C[u, p] = sum_a vcpu_count[a] * |V[a, u] - D[home[a], p]|: every vnode a whose vCPUs touch
    pool u expects distance V[a, u] and gets D[home[a], p].
    """
    out: F64 = cost_matrix_many(
        vdist=np.asarray(vdist)[None],
        pdist=np.asarray(pdist),
        home=np.asarray(home)[None],
        vcpu_count=np.asarray(vcpu_count)[None],
    )[0]
    return out


def cost_matrix_many(
    *,
    vdist: NDArray[np.integer],
    pdist: NDArray[np.integer],
    home: NDArray[np.integer],
    vcpu_count: NDArray[np.integer] | NDArray[np.floating],
) -> F64:
    """Batched ``cost_matrix``: vdist (N,V,V), pdist (P,P) shared, home (N,V), vcpu_count (N,V)."""
    v = np.asarray(vdist, dtype=np.float64)
    d_home = np.asarray(pdist, dtype=np.float64)[np.asarray(home)]  # (N, A, P)
    cw = np.asarray(vcpu_count, dtype=np.float64)
    err = np.abs(v[:, :, :, None] - d_home[:, :, None, :])  # (N, A, U, P)
    out: F64 = np.einsum("na,naup->nup", cw, err)
    return out


def distortion_many(
    *,
    backing_mib: NDArray[np.integer],
    vdist: NDArray[np.integer],
    pdist: NDArray[np.integer],
    home: NDArray[np.integer],
    vcpu_count: NDArray[np.integer] | NDArray[np.floating],
) -> F64:
    """(N,) distortion of N domains on one host; padded vnodes must carry weight 0 and X 0."""
    x = np.asarray(backing_mib, dtype=np.float64)
    cw = np.asarray(vcpu_count, dtype=np.float64)
    c = cost_matrix_many(vdist=vdist, pdist=pdist, home=home, vcpu_count=cw)
    num = np.einsum("nup,nup->n", x, c)
    den = cw.sum(axis=1) * x.sum(axis=(1, 2))
    out = np.zeros(x.shape[0], dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def distortion(
    *,
    backing_mib: NDArray[np.integer],
    vdist: NDArray[np.integer],
    pdist: NDArray[np.integer],
    home: NDArray[np.integer],
    vcpu_count: NDArray[np.integer] | NDArray[np.floating],
) -> float:
    """Memory-weighted mean |virtual - physical| distance error, in SLIT units.

    0 means the guest's belief (its SLIT) matches where its memory really is; it is what the
    ``faithful`` policy minimises and what migration plans report before/after.
    """
    return float(
        distortion_many(
            backing_mib=np.asarray(backing_mib)[None],
            vdist=np.asarray(vdist)[None],
            pdist=pdist,
            home=np.asarray(home)[None],
            vcpu_count=np.asarray(vcpu_count)[None],
        )[0]
    )


def remote_fraction_many(*, backing_mib: NDArray[np.integer], home: NDArray[np.integer]) -> F64:
    """(N,) share of each domain's memory not on its vnode's home pnode."""
    x = np.asarray(backing_mib, dtype=np.int64)
    h = np.asarray(home, dtype=np.int64)
    local = np.take_along_axis(x, h[:, :, None], axis=2)[:, :, 0].sum(axis=1)
    total = x.sum(axis=(1, 2))
    out = np.zeros(x.shape[0], dtype=np.float64)
    np.divide(
        (total - local).astype(np.float64), total.astype(np.float64), out=out, where=total > 0
    )
    return out


def remote_fraction(*, backing_mib: NDArray[np.integer], home: NDArray[np.integer]) -> float:
    """Share of memory remote from its vCPUs: the locality figure migration plans report."""
    many = remote_fraction_many(
        backing_mib=np.asarray(backing_mib)[None], home=np.asarray(home)[None]
    )
    return float(many[0])
