"""The planner on bench/cluster.py's cluster shapes at a few hundred hosts: every restart it lists
must hold, scenario by scenario (capacity per pnode once squeezed, survivors only, eligible hosts
only, every vnode on a pnode of its host), which the small oracle clusters cannot exercise (the
sweep's chunks, candidate rotation, the packer on real topologies)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.failover import generate, subset
from service.engine.failover import FailoverHosts, FailoverPlan, ProtectedDomains, plan_failover


def check_single_failures(
    hosts: FailoverHosts, domains: ProtectedDomains, plan: FailoverPlan
) -> None:
    rs = plan.restarts
    full = hosts.free_mib + hosts.squeezable_mib
    n_pn = np.array([s.shape[0] for s in hosts.shapes])[hosts.shape]
    for g in np.unique(rs.failed_host).tolist():
        rows = np.flatnonzero(rs.failed_host == g)
        assert (domains.host[rs.domain[rows]] == g).all()
        assert len(set(rs.domain[rows].tolist())) == rows.size, "a domain restarted twice"
        assert (rs.host[rows] != g).all() and hosts.eligible[rs.host[rows]].all()
        used = np.zeros_like(full)
        for i in rows.tolist():
            guest = domains.guests[int(domains.guest[rs.domain[i]])]
            pn = rs.mapping[i, : guest.restart_mib.shape[0]]
            h = int(rs.host[i])
            assert ((pn >= 0) & (pn < n_pn[h])).all()
            np.add.at(used[h], pn, guest.restart_mib)
        assert (used <= full).all(), f"host over capacity when host {g} fails"
        if plan.tolerated:
            assert rows.size == int((domains.host == g).sum())


@pytest.mark.parametrize(
    ("cap_mib", "every", "squeeze_div"),
    [
        (None, 1, 1),  # roomy: the sweep serves every scenario
        (2048, 12, 4),  # tight, squeezing: many scenarios packed one by one
        (3072, 8, 100),  # too tight: not tolerated, the restarts that fit are listed
        (12288, 30, 2),  # eight eligible hosts: restarts of one scenario share them
    ],
)
def test_every_listed_restart_holds(cap_mib: int | None, every: int, squeeze_div: int) -> None:
    n = 240
    hosts, domains = subset(*generate(n, seed=26), n)
    if cap_mib is not None:
        eligible = np.zeros(n, dtype=bool)
        eligible[::every] = True
        hosts = FailoverHosts(
            free_mib=np.minimum(hosts.free_mib, cap_mib),
            squeezable_mib=hosts.squeezable_mib // squeeze_div,
            eligible=eligible,
            shape=hosts.shape,
            shapes=hosts.shapes,
        )
    plan = plan_failover(hosts, domains, host_failures=1)
    assert plan.exact
    assert len(plan.restarts) > 0
    check_single_failures(hosts, domains, plan)
    if not plan.tolerated:
        assert plan.worst is not None and plan.worst.unplaced
        assert all(u.reason for u in plan.worst.unplaced)
