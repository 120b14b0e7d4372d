"""The service and the host agent as the processes an operator runs: uvicorn on SQLite (with the
service's default timings) and `numa-balloon-agent run --backend libvirt` against the private
libvirt. Both run in sessions of their own, so a Ctrl-C reaches only the runner, which stops
them in order; neither inherits the caller's NUMA_BALLOON_* settings."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from numa_balloon_client import Client, NumaBalloonError, RetryPolicy

ROOT = Path(__file__).resolve().parents[1]

# $0 the interpreter, $1 the port: migrate the database, then serve (the process becomes uvicorn).
SERVE = (
    'set -e; "$0" -m service.cli migrate >/dev/null; exec "$0" -m uvicorn service.app:create_app '
    '--factory --host 127.0.0.1 --port "$1" --log-level warning'
)


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMA_BALLOON_")}
    env.update(settings)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class Service:
    """`make run`'s service on a free port with a SQLite file in `workdir`. Entering the context
    launches it (the database migrated first); `wait_ready` waits for `/readyz`, so other work
    can go on meanwhile."""

    def __init__(self, workdir: Path, token: str | None = None) -> None:
        self.workdir = workdir
        self.token = token or secrets.token_urlsafe(24)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "uvicorn.log"

    def __enter__(self) -> Service:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = clean_env(
            NUMA_BALLOON_DATABASE_URL=f"sqlite:///{self.workdir / 'numa-balloon.db'}",
            NUMA_BALLOON_ADMIN_TOKEN=self.token,
        )
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["sh", "-c", SERVE, sys.executable, str(self.port)],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        with Client(self.url, timeout_s=2, retry=RetryPolicy(attempts=1)) as probe:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the service exited; see {self.log}")
                try:
                    probe.readyz()
                    return
                except NumaBalloonError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the service was not ready in {timeout_s:.0f} s")
                time.sleep(0.1)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stop(self.proc)


def agent_command() -> list[str]:
    """The `numa-balloon-agent` entry point of this environment."""
    script = Path(sys.executable).with_name("numa-balloon-agent")
    return [str(script)] if script.exists() else [sys.executable, "-m", "numa_balloon_agent"]


class HostAgent:
    """`numa-balloon-agent run` until the context ends; it registers the host with the admin
    token the first time, then works with its own agent token (kept in `state_dir`). With
    `host`, the host was registered by the operator: the agent starts with that host's id and
    agent token in its state file, as it would have written them itself. `migrate_uri` is
    where its migrations go (`--migrate-uri`)."""

    def __init__(
        self,
        workdir: Path,
        *,
        url: str,
        admin_token: str,
        uri: str,
        name: str,
        interval_s: float,
        migrate_uri: str | None = None,
        host: tuple[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.url = url
        self.host = host
        self.argv = [
            *agent_command(),
            "run",
            "--backend", "libvirt",
            "--uri", uri,
            "--url", url,
            f"--token={admin_token}",  # one word: a token may start with "-"
            "--name", name,
            "--state-dir", str(workdir / "state"),
            "--machine-id-file", str(workdir / "machine-id"),
            "--interval", str(interval_s),
            "--log-format", "json",
            *(["--migrate-uri", migrate_uri] if migrate_uri else []),
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "agent.log"

    def __enter__(self) -> HostAgent:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Registration is idempotent per (machine id, name): a machine id of the run's own.
        (self.workdir / "machine-id").write_text(secrets.token_hex(16) + "\n")
        if self.host is not None:
            host_id, token = self.host
            state = {"url": self.url, "host_id": host_id, "agent_token": token}
            (self.workdir / "state").mkdir(parents=True, exist_ok=True)
            fd = os.open(self.workdir / "state" / "agent.json", os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(state, f)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stop(self.proc)

    def pause(self) -> None:
        """Hold the agent (SIGSTOP): it reports and fetches nothing until `resume`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"the host agent exited {self.proc.returncode}:\n{self.tail()}")

    def state(self) -> dict[str, Any] | None:
        """The agent's state file (host id, its agent token), once it registered."""
        try:
            state: dict[str, Any] = json.loads((self.workdir / "state" / "agent.json").read_text())
        except (OSError, ValueError):
            return None
        return state

    def events(self) -> list[dict[str, Any]]:
        """The agent's JSON log lines (a line that is not JSON, e.g. a traceback, as text)."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": line})
        return out

    def tail(self, n: int = 15) -> str:
        lines = self.log.read_text(errors="replace").splitlines()[-n:]
        return "\n".join(f"  | {line}" for line in lines)
