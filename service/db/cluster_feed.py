"""The cluster's placement rows kept in each worker's memory, brought up to date per request.

Reading 10,000 hosts whole means aggregating 67,500 pnode rows: about 125 ms of PostgreSQL's
time and 45 ms of the worker's, per placement request. Instead each worker keeps the rows and the
snapshot it read them in. A request reads, in one indexed statement, only the hosts whose
`changed_xid` is not visible in that snapshot, with the new snapshot and the number of active
hosts. Triggers stamp `changed_xid` in the transaction that changes a host's name, state, SLIT or
pnode counters (migration i18_cluster_feed), so no writer can forget to.

Why snapshots rather than a counter: a transaction that takes a sequence number and commits after
a later one would be skipped by a reader remembering the highest number it saw. A transaction a
snapshot leaves out is found whenever it commits, because every snapshot taken before its commit
leaves it out too. Deleted hosts leave no row to find: when the database counts other active
hosts than those kept, the rows are read whole again.

The answer is as fresh as a whole read at the same moment. Writes never trust it anyway: a create
re-checks the host it chose under that host's lock. SQLite has no snapshots; there every request
reads the cluster whole (its clusters are small).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool

from service.db.cluster_rows import CHANGES, I64, HostRows, read_whole, unpack


class ClusterFeed:
    """One worker's copy of the active hosts, and the snapshot it is as of."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: HostRows | None = None
        self._snapshot = ""
        self.whole_reads = 0  # how often the rows were read whole (tests and benchmarks look)

    def rows(self, session: Session) -> HostRows:
        """The active hosts as committed now. Shared: callers must not modify the arrays."""
        with self._lock:
            if self._rows is not None:
                result = session.execute(CHANGES, {"b_snap": self._snapshot}).all()
                caught_up = _apply(self._rows, result)
                if caught_up is not None:
                    if result[0][2]:  # a transaction that wrote may see its own changes
                        self._rows, self._snapshot = _read_only(caught_up), result[0][0]
                    return caught_up
            rows, snapshot = read_whole(session, snapshot=True)
            self.whole_reads += 1
            if snapshot is not None:
                self._rows, self._snapshot = _read_only(rows), snapshot
            return rows


_FEEDS: weakref.WeakKeyDictionary[Pool, ClusterFeed] = weakref.WeakKeyDictionary()
_FEEDS_LOCK = threading.Lock()


def feed_for(engine: Engine) -> ClusterFeed:
    """The worker's feed for a database: one per connection pool, which an engine shares with
    the engines its execution options derive (read sessions, lookups); tests run several."""
    with _FEEDS_LOCK:
        feed = _FEEDS.get(engine.pool)
        if feed is None:
            feed = _FEEDS[engine.pool] = ClusterFeed()
        return feed


def _read_only(rows: HostRows) -> HostRows:
    """The kept matrices are shared by every request of the worker: writing one raises."""
    for mat in (rows.free, rows.cpus, rows.load):
        mat.setflags(write=False)
    return rows


def _apply(rows: HostRows, result: Sequence[Any]) -> HostRows | None:
    """`rows` with the changed hosts of `result` (rows of `CHANGES`) applied, or None when they
    must be read whole: the active hosts counted differ, or a host has more pnodes than kept."""
    active = int(result[0][1])
    changed = [r[3:] for r in result if r[3] is not None]
    if not changed:
        return rows if active == len(rows.ids) else None
    free, cpus, load = unpack([r[6] for r in changed])
    width = rows.free.shape[1]
    if free.shape[1] > width:
        return None
    at = {h: i for i, h in enumerate(rows.ids)}
    keep = np.ones(len(rows.ids), dtype=bool)
    new_free, new_cpus, new_load = rows.free.copy(), rows.cpus.copy(), rows.load.copy()
    names, keys, slits = list(rows.names), list(rows.keys), dict(rows.slits)
    joined: list[int] = []
    for j, r in enumerate(changed):
        host_id, name, state, key, slit = r[0], r[1], r[3], r[4], r[5]
        i = at.get(host_id)
        if state != "active":
            if i is not None:
                keep[i] = False
            continue
        slits.setdefault(key, slit)
        if i is None:
            joined.append(j)
            continue
        names[i], keys[i] = name, key
        for mat, new in ((new_free, free), (new_cpus, cpus), (new_load, load)):
            mat[i] = 0
            mat[i, : new.shape[1]] = new[j]
    out = HostRows(
        ids=rows.ids,
        names=names,
        created=rows.created,
        keys=keys,
        slits=slits,
        free=new_free,
        cpus=new_cpus,
        load=new_load,
    )
    if joined or not keep.all():
        out = _reorder(
            out, keep, [changed[j] for j in joined], free[joined], cpus[joined], load[joined]
        )
    return out if active == len(out.ids) else None


def _reorder(
    rows: HostRows, keep: Any, joined: list[Any], free: I64, cpus: I64, load: I64
) -> HostRows:
    """Hosts left or joined (registered, or active again): the rows rebuilt in creation order,
    the order a whole read gives (ranking breaks ties by it)."""
    width = rows.free.shape[1]
    idx = np.flatnonzero(keep)
    ids = [rows.ids[i] for i in idx] + [r[0] for r in joined]
    names = [rows.names[i] for i in idx] + [r[1] for r in joined]
    created = [rows.created[i] for i in idx] + [r[2] for r in joined]
    keys = [rows.keys[i] for i in idx] + [r[4] for r in joined]

    def stacked(kept: I64, new: I64) -> I64:
        padded = np.zeros((new.shape[0], width), dtype=np.int64)
        padded[:, : new.shape[1]] = new
        out: I64 = np.concatenate([kept[idx], padded])
        return out

    mats = [stacked(rows.free, free), stacked(rows.cpus, cpus), stacked(rows.load, load)]
    order = sorted(range(len(ids)), key=lambda i: (created[i], ids[i]))
    return HostRows(
        ids=[ids[i] for i in order],
        names=[names[i] for i in order],
        created=[created[i] for i in order],
        keys=[keys[i] for i in order],
        slits=rows.slits,
        free=mats[0][order],
        cpus=mats[1][order],
        load=mats[2][order],
    )
