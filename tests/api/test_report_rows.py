"""The changed report's plain-row accounting (`db/report_rows.py`) is the loader's, and its kept
arrays (`HostAccounting.keep_arrays`) stay what rebuilding them from the rows gives.

A report that changes pools reads its host as plain rows rather than mapped ones: every value
the rules and `apply` read must be the one `load_host_accounting` would have given, in the same
order (events follow the domains' order), on both backends.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from fastapi import FastAPI

from service.db.accounting import HostAccounting
from service.db.changes import ChangeSet, absorb
from service.db.loaders import load_host_accounting
from service.db.report_rows import load_report_accounting
from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body

NOW = datetime(2030, 1, 1, tzinfo=UTC)
_DOMAIN = ("id", "block_mib", "target_mib", "uncooperative", "last_progress_at", "target_set_at")
_VNODE = ("index", "size_mib", "target_mib", "actual_mib", "home_pnode", "vcpu_count")


def _host_with_domains(client: ApiClient) -> str:
    """A host of two pnodes with domains of one, two and three vnodes, some reported."""
    host = client.post("/v1/hosts", json=host_body("kvm-rows", n=2)).json()
    ids = []
    for i, sizes in enumerate(([2048], [1024, 3072], [1024, 1024, 2048])):
        body = domain_body(f"vm-rows-{i}", sizes, host_id=host["id"])
        r = client.post("/v1/domains", json=body)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    report = {
        "domains": [
            {"domain_id": ids[1], "vnodes": [{"index": 0, "actual_mib": 896}]},
            {"domain_id": ids[2], "vnodes": [{"index": 2, "actual_mib": 2048}]},
        ]
    }
    r = client.post(f"/v1/agent/hosts/{host['id']}/report", token=host["agent_token"], json=report)
    assert r.status_code == 200, r.text
    return str(host["id"])


def _rows(state: HostAccounting) -> list[Any]:
    return [
        (
            [getattr(d, name) for name in _DOMAIN],
            [[getattr(vn, name) for name in _VNODE] for vn in d.vnodes],
        )
        for d in state.domains
    ]


def _same_arrays(a: HostAccounting, b: HostAccounting) -> None:
    x, y = a.arrays(), b.arrays()
    for name in ("backing_mib", "size_mib", "home", "actual_mib", "vcpu_count", "vnode_count"):
        assert np.array_equal(getattr(x, name), getattr(y, name)), name
    assert np.array_equal(a.allocated_mib(), b.allocated_mib())
    assert np.array_equal(a.load_vcpus(), b.load_vcpus())


def test_plain_rows_read_what_the_loader_reads(client: ApiClient, app: FastAPI) -> None:
    host_id = _host_with_domains(client)
    with app.state.sessionmaker() as session:
        mapped = load_host_accounting(session, host_id, lock=True, now=NOW, lean=True)
        plain = load_report_accounting(session, host_id, NOW)
        assert mapped is not None and plain is not None
        assert _rows(plain) == _rows(mapped)
        assert plain.backing.keys() == mapped.backing.keys()
        for domain_id, backing in mapped.backing.items():
            assert np.array_equal(plain.backing[domain_id], backing)
        assert np.array_equal(plain.claimed_mib, mapped.claimed_mib)
        _same_arrays(plain, mapped)
        assert load_report_accounting(session, "no-such-host", NOW) is None


def test_kept_arrays_follow_what_absorb_takes_in(client: ApiClient, app: FastAPI) -> None:
    host_id = _host_with_domains(client)
    with app.state.sessionmaker() as session:
        kept = load_report_accounting(session, host_id, NOW)
        assert kept is not None
        kept.keep_arrays()
        first, second, third = (d.id for d in kept.domains)
        changes = ChangeSet(
            actual_mib={first: {0: 4096}, second: {0: None, 1: 3072}, third: {1: 512}},
            backing={third: np.array([[1024, 0], [0, 1024], [1024, 1024]], dtype=np.int64)},
        )
        absorb(kept, changes, updated_at=NOW)
        rebuilt = HostAccounting(
            host=kept.host, domains=kept.domains, backing=kept.backing, claimed_mib=kept.claimed_mib
        )
        _same_arrays(kept, rebuilt)
        assert kept.domain(second) is kept.domains[1] and kept.domain("elsewhere") is None
        # A domain the kept arrays do not hold: they are dropped, and rebuilt on every call.
        absorb(kept, ChangeSet(actual_mib={"elsewhere": {0: 1}}), updated_at=NOW)
        _same_arrays(kept, rebuilt)
