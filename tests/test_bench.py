"""The engine benchmarks still run and still end with their headline line (`--quick` sizes).

Their figures are read by people, not asserted here: timing assertions in tests are flaky by
nature. What a test can catch is a benchmark that crashes or stops printing its summary."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NUM = r"[0-9.]+"
NUM_OR_NAN = r"(?:[0-9.]+|nan|inf)"
HEADLINES = {
    "bench.engine": rf"^engine squeeze 1000x8x8: numpy_ms={NUM} reference_ms={NUM} speedup={NUM}$",
    "bench.place": rf"^place 8x16: ours_ms={NUM} nova_style_ms={NUM} speedup={NUM} "
    rf"distortion_ours={NUM} distortion_nova={NUM_OR_NAN} nova_host_order_ms={NUM} "
    rf"nova_unsolved=\d$",
    "bench.migration": rf"^migration plan 32v 1TiB 8p->64p: rebalance_ms={NUM} "
    rf"replug_ms={NUM} steps=\d+$",
    "bench.hostile": rf"^hostile 1MiB: unauth_ms={NUM} auth_ms={NUM} "
    rf"healthz_idle_p50_ms={NUM} healthz_under_attack_p50_ms={NUM}$",
    # Bulk-loads a scratch PostgreSQL and serves it with 2 uvicorn workers; report figures are
    # nan when the agents' batch report route is absent, inf when reports go unanswered.
    # The agents' channel with leases (issue 25) last.
    "bench.cluster": rf"^agents \d+ hosts: lease_cpu_ms={NUM} leases_rps={NUM} "
    rf"leases_p99_ms={NUM_OR_NAN} natural_rps={NUM} natural_p99_ms={NUM_OR_NAN} "
    rf"report_cpu_ms={NUM_OR_NAN}$",
    "bench.failover": rf"^failover engine \d+ hosts: r1_exact_ms={NUM} r1_1000_ms={NUM} "
    rf"r2_100_ms={NUM} admission_ms={NUM} tolerated=(True|False)$",
    "bench.client": rf"^client get_domain: httpx_cpu_ms={NUM} client_cpu_ms={NUM} "
    rf"async_cpu_ms={NUM} overhead_ms=-?{NUM}$",
    # 2 uvicorn workers on a scratch PostgreSQL, with open long-polls and streams.
    "bench.waiters": rf"^waiters \d+: healthz_p50_ratio={NUM} put_target_p50_ratio={NUM}$",
}
ON_POSTGRES = {"bench.cluster", "bench.waiters"}
# Each serves a bulk-loaded PostgreSQL with 2 uvicorn workers for half a minute or more: they run
# in `make test-all` with the soak rounds.
LONG = {"bench.cluster", "bench.waiters"}
# A smoke run needs each open-loop phase to run, not to run long.
EXTRA_ARGS = {"bench.cluster": ["--seconds", "1"]}

BEFORE_LAST = {
    "bench.cluster": [
        rf"^cluster \d+ hosts: placement_p50_ms={NUM} template_ms={NUM} "
        rf"list_p99_ms={NUM} summary_ms={NUM} report_cpu_ms={NUM_OR_NAN} "
        rf"reports_rps={NUM_OR_NAN} reports_p99_ms={NUM_OR_NAN}$",
        rf"^rank 8x\d+: ms={NUM}$",
    ]
}


@pytest.mark.parametrize(
    "module",
    [
        pytest.param(
            m,
            marks=[
                *([pytest.mark.postgres] if m in ON_POSTGRES else []),
                *([pytest.mark.soak] if m in LONG else []),
            ],
        )
        for m in sorted(HEADLINES)
    ],
)
def test_benchmark_runs_and_prints_its_headline(module: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", module, "--quick", *EXTRA_ARGS.get(module, [])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    assert re.match(HEADLINES[module], lines[-1]), lines[-1]
    for back, pattern in enumerate(BEFORE_LAST.get(module, []), start=2):
        assert re.match(pattern, lines[-back]), lines[-back]
