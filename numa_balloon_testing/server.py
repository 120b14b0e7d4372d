"""The one uvicorn launcher of the tests, the benchmarks and the demo: a real uvicorn (optionally
with several workers) on a given database, ready when `GET /readyz` answers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from numa_balloon_client import Client, NumaBalloonError, RetryPolicy

ROOT = Path(__file__).resolve().parent.parent
BENCH_ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ready(url: str, timeout_s: float = 1) -> bool:
    """`GET /readyz` answered 200 (one attempt: the caller polls)."""
    with Client(url, timeout_s=timeout_s, retry=RetryPolicy(attempts=1)) as nb:
        try:
            nb.readyz()
        except NumaBalloonError:
            return False
    return True


class Server:
    def __init__(
        self,
        db_url: str,
        *,
        workers: int = 1,
        admin_token: str = BENCH_ADMIN_TOKEN,
        env: dict[str, str] | None = None,
        log_level: str = "warning",
        log_path: str | None = None,
        port: int | None = None,
    ) -> None:
        self.db_url = db_url
        self.workers = workers
        self.admin_token = admin_token
        self.extra_env = env or {}
        self.log_level = log_level
        self.log_path = log_path
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The environment of the service's processes."""
        return dict(
            os.environ,
            NUMA_BALLOON_DATABASE_URL=self.db_url,
            NUMA_BALLOON_ADMIN_TOKEN=self.admin_token,
            **self.extra_env,
        )

    def start(self, timeout_s: float = 120) -> None:
        env = self.env()
        cmd = [
            sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(self.port), "--log-level", self.log_level,
            "--no-access-log", "--timeout-keep-alive", "30", "--no-proxy-headers",
        ]  # fmt: skip
        if self.workers > 1:
            cmd += ["--workers", str(self.workers)]
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
        finally:
            if not isinstance(log, int):
                log.close()
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()  # a start that fails leaves no uvicorn behind
            raise

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                where = f"; see {self.log_path}" if self.log_path else ""
                raise RuntimeError(f"uvicorn exited with {self.proc.returncode}{where}")
            if self.ready() and (self.workers <= 1 or len(self.worker_pids()) >= self.workers):
                return
            time.sleep(0.1)
        raise RuntimeError(f"uvicorn did not become ready in {timeout_s:g} s")

    def ready(self) -> bool:
        """`GET /readyz` answers 200 (one attempt: start() polls)."""
        return ready(self.url)

    def worker_pids(self) -> list[int]:
        """The worker processes of a multi-worker server (children of the supervisor)."""
        assert self.proc is not None
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []

    def kill(self) -> None:
        assert self.proc is not None
        for pid in self.worker_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
