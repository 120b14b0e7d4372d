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
HEADLINES = {
    "bench.engine": rf"^engine squeeze 1000x8x8: numpy_ms={NUM} reference_ms={NUM} speedup={NUM}$",
    "bench.place": rf"^place 8x16: ours_ms={NUM} nova_style_ms={NUM} speedup={NUM} "
    rf"distortion_ours={NUM} distortion_nova={NUM}$",
    "bench.migration": rf"^migration plan 32v 1TiB 8p->64p: rebalance_ms={NUM} "
    rf"replug_ms={NUM} steps=\d+$",
    "bench.client": rf"^client get_domain: httpx_cpu_ms={NUM} client_cpu_ms={NUM} "
    rf"async_cpu_ms={NUM} overhead_ms=-?{NUM}$",
}


@pytest.mark.parametrize("module", sorted(HEADLINES))
def test_benchmark_runs_and_prints_its_headline(module: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", module, "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    last = run.stdout.strip().splitlines()[-1]
    assert re.match(HEADLINES[module], last), last
