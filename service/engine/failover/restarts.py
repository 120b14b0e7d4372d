"""Restart plans as arrays the core turns into JSON: one row per restarted domain."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from service.engine.failover.fit import Fit
from service.engine.failover.problem import Problem

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True, kw_only=True, eq=False)
class Restarts:
    """Row i: ``domain`` (index into the protected domains), on ``failed_host``, restarts on
    ``host`` with vnode v homed on pnode ``mapping[i, v]`` (-1 past its vnodes) and that
    ``distortion`` (``place``'s definition)."""

    failed_host: IntArray
    domain: IntArray
    host: IntArray
    mapping: IntArray
    distortion: FloatArray

    def __len__(self) -> int:
        return int(self.domain.shape[0])

    def vnodes(self, i: int) -> list[tuple[int, int]]:
        """(vnode, pnode) pairs of row ``i``."""
        row = self.mapping[i]
        return [(v, int(p)) for v, p in enumerate(row.tolist()) if p >= 0]


def empty_restarts() -> Restarts:
    z = np.zeros(0, dtype=np.int64)
    return Restarts(
        failed_host=z,
        domain=z,
        host=z,
        mapping=np.zeros((0, 1), np.int64),
        distortion=np.zeros(0),
    )


def _spread_home(prob: Problem, d: int, h: int) -> IntArray:
    """Where a spread restart homes its vnodes: the guest's mapping within its distortion
    limit, or, without a limit, largest vnodes on the pnodes with the most room."""
    g = int(prob.dom_guest[d])
    shape = int(prob.shape[h])
    if prob.guests[g].limit is not None:
        ans, m = prob.home_ok(g, shape)
        if ans == Fit.FIT and m is not None:
            return m
    dem = prob.guests[g].shape.restart_mib
    p = prob.shapes[shape].shape[0]
    rem = (prob.hosts.free_mib[h, :p] + prob.hosts.squeezable_mib[h, :p]).astype(np.int64)
    out = np.zeros(dem.shape[0], dtype=np.int64)
    for v in np.argsort(-dem, kind="stable").tolist():
        q = int(np.argmax(rem))
        out[v] = q
        rem[q] -= dem[v]
    return out


def n_vnodes(prob: Problem, dom: IntArray) -> IntArray:
    out: IntArray = prob.guest_vnodes[prob.dom_guest[dom]] if dom.size else np.zeros(0, np.int64)
    return out


def _distortions(prob: Problem, dom: IntArray, host: IntArray, mapping: IntArray) -> FloatArray:
    out = np.zeros(dom.shape[0])
    guest = prob.dom_guest[dom]
    n_v = n_vnodes(prob, dom)
    shape = prob.shape[host]
    for v in np.unique(n_v).tolist():
        for s in np.unique(shape[n_v == v]).tolist():
            rows = np.flatnonzero((n_v == v) & (shape == s))
            gs, inv = np.unique(guest[rows], return_inverse=True)
            cw = np.stack([prob.guests[int(g)].shape.vcpu_count for g in gs]).astype(float)
            dem = np.stack([prob.guests[int(g)].shape.restart_mib for g in gs]).astype(float)
            den = cw.sum(axis=1) * dem.sum(axis=1)
            wg = cw[:, :, None] * dem[:, None, :] / np.where(den > 0, den, 1.0)[:, None, None]
            w = wg[inv]
            vd = np.stack([prob.guests[int(g)].shape.vdist for g in gs])[inv]
            m = mapping[rows, :v]
            pd = prob.shapes[s]
            dm = pd[m[:, :, None], m[:, None, :]]
            out[rows] = (w * np.abs(vd - dm)).sum(axis=(1, 2))
    return out


def make_restarts(
    prob: Problem, failed_host: IntArray, dom: IntArray, host: IntArray, item_map: IntArray
) -> Restarts:
    """Rows from item mappings (pnodes, or the one host-wide bin with ``allow_spread``)."""
    n = dom.shape[0]
    width = int(prob.guest_vnodes.max(initial=1))
    mapping = np.full((n, width), -1, dtype=np.int64)
    n_v = n_vnodes(prob, dom)
    if prob.spread:
        for i in range(n):
            mapping[i, : n_v[i]] = _spread_home(prob, int(dom[i]), int(host[i]))
    else:
        k = min(width, item_map.shape[1])
        mapping[:, :k] = item_map[:, :k]
        mapping[np.arange(width)[None, :] >= n_v[:, None]] = -1
    return Restarts(
        failed_host=failed_host.astype(np.int64),
        domain=dom.astype(np.int64),
        host=host.astype(np.int64),
        mapping=mapping,
        distortion=_distortions(prob, dom, host, mapping) if n else np.zeros(0),
    )
