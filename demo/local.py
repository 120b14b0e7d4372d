"""Run the service locally for the demo: SQLite in a directory, uvicorn on a free port (through
the one launcher the tests and benchmarks use, numa_balloon_testing.server)."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

from numa_balloon_testing.server import ROOT, Server

#: The demo's clock is fast: a driver without progress for 1 s is inactive, for 2 s uncooperative.
FAST_SETTINGS = {
    "NUMA_BALLOON_INACTIVE_AFTER_S": "1",
    "NUMA_BALLOON_UNCOOPERATIVE_AFTER_S": "2",
}

__all__ = ["FAST_SETTINGS", "LocalService"]


class LocalService(Server):
    """`python -m service.cli migrate`, then uvicorn, as `make run` does; stopped on exit."""

    def __init__(self, workdir: Path, token: str | None = None, port: int | None = None) -> None:
        self.workdir = workdir
        super().__init__(
            f"sqlite:///{workdir / 'numa-balloon.db'}",
            admin_token=token or secrets.token_urlsafe(24),
            env=FAST_SETTINGS,
            log_path=str(workdir / "uvicorn.log"),
            port=port,
        )

    @property
    def token(self) -> str:
        return self.admin_token

    def start(self, timeout_s: float = 120) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "service.cli", "migrate"],
            cwd=ROOT,
            env=self.env(),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        super().start(timeout_s)

    def __enter__(self) -> LocalService:
        self.start()
        return self
