"""`make demo AGENTS=real`: the demo story with the real agents on libvirt's test driver."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.libvirt_env import require_binding

ROOT = Path(__file__).resolve().parents[2]


def test_demo_with_real_agents(tmp_path: Path) -> None:
    require_binding()
    summary = tmp_path / "summary.json"
    run = subprocess.run(
        [sys.executable, "-m", "demo", "--local", "--agents", "real", "--workdir", str(tmp_path),
         "--summary-json", str(summary)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "registered by its agent (libvirt)" in run.stdout
    assert "migration to linux-sysfs: completed" in run.stdout
    assert "libvirt: " not in run.stderr  # libvirt's own error printer is silenced
    s = json.loads(summary.read_text())
    assert s == {
        "guest_online_mib": 1536,
        "host": "linux-sysfs",
        "migration": "completed",
        "steps_done": True,
        "target_mib": 1536,
    }
