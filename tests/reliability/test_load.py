"""bench/load.py with small numbers: 2 uvicorn workers on PostgreSQL, 16 clients, then the audit."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load import print_report, run_load

pytestmark = [pytest.mark.postgres, pytest.mark.reliability]


def test_mixed_load_loses_nothing_and_never_overcommits(
    postgres_db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "server.log"
    result = run_load(
        postgres_db_url,
        workers=2,
        clients=16,
        seconds=8,
        seed=7,
        min_requests=300,
        log_path=str(log),
    )
    print_report(result)
    report = capsys.readouterr().out
    s, a = result.stats, result.audit
    assert s.requests >= 300, report  # the budget prolongs a slow run; it never cuts one
    ops = {op for op, _ in s.statuses}
    assert {"create", "target", "squeeze", "start", "advance", "read-domain"} <= ops, report
    assert s.server_errors == 0, report + log.read_text()[-4000:]
    assert not s.unexpected, report
    assert not s.transport_errors, report
    assert not s.idempotency_mismatches, report
    assert a.pnodes > 0 and a.domains > 0, report
    assert not a.overcommitted, report
    assert not a.differences, report
    assert not a.charge_differences, report
    assert not a.leaked_claims, report
    assert not a.duplicates, report
