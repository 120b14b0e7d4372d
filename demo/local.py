"""Run the service locally for the demo: SQLite in a directory, uvicorn on a free port."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

from numa_balloon_client import Client, NumaBalloonError, RetryPolicy

ROOT = Path(__file__).resolve().parents[1]

#: The demo's clock is fast: a driver without progress for 1 s is inactive, for 2 s uncooperative.
FAST_SETTINGS = {
    "NUMA_BALLOON_INACTIVE_AFTER_S": "1",
    "NUMA_BALLOON_UNCOOPERATIVE_AFTER_S": "2",
}


def ready(url: str) -> bool:
    """`GET /readyz` answered 200 (one attempt: the caller polls)."""
    with Client(url, timeout_s=2, retry=RetryPolicy(attempts=1)) as nb:
        try:
            nb.readyz()
        except NumaBalloonError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalService:
    """`python -m service.cli migrate`, then uvicorn, as `make run` does; stopped on exit."""

    def __init__(self, workdir: Path, token: str | None = None, port: int | None = None) -> None:
        self.workdir = workdir
        self.token = token or secrets.token_urlsafe(24)
        self.port = port or free_port()
        self.db_url = f"sqlite:///{workdir / 'numa-balloon.db'}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return dict(
            os.environ,
            NUMA_BALLOON_DATABASE_URL=self.db_url,
            NUMA_BALLOON_ADMIN_TOKEN=self.token,
            **FAST_SETTINGS,
        )

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = self.env()
        subprocess.run(
            [sys.executable, "-m", "service.cli", "migrate"],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        with open(self.workdir / "uvicorn.log", "wb") as log:  # the child keeps its own fd
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "service.app:create_app",
                    "--factory",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited; see {self.workdir / 'uvicorn.log'}")
            if ready(self.url):
                return
            time.sleep(0.1)
        raise RuntimeError("uvicorn did not become ready in 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> LocalService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
