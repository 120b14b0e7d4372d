"""The service and the host agent as the processes an operator runs: uvicorn on SQLite (the
service's default timings, not the demo's fast clock) and `numa-balloon-agent run --backend
libvirt` against the private libvirt."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from demo.local import FAST_SETTINGS, LocalService


class Service(LocalService):
    """`make run`'s service on a free port with a SQLite file in the work directory."""

    def env(self) -> dict[str, str]:
        return {k: v for k, v in super().env().items() if k not in FAST_SETTINGS}

    @property
    def log(self) -> Path:
        return self.workdir / "uvicorn.log"

    def __enter__(self) -> Service:
        self.start()
        return self


def agent_command() -> list[str]:
    """The `numa-balloon-agent` entry point of this environment."""
    script = Path(sys.executable).with_name("numa-balloon-agent")
    return [str(script)] if script.exists() else [sys.executable, "-m", "numa_balloon_agent"]


class HostAgent:
    """`numa-balloon-agent run` until the context ends; it registers the host with the admin
    token the first time, then works with its own agent token (kept in `state_dir`)."""

    def __init__(
        self,
        workdir: Path,
        *,
        url: str,
        admin_token: str,
        uri: str,
        name: str,
        interval_s: float,
    ) -> None:
        self.workdir = workdir
        self.argv = [
            *agent_command(),
            "run",
            "--backend", "libvirt",
            "--uri", uri,
            "--url", url,
            "--token", admin_token,
            "--name", name,
            "--state-dir", str(workdir / "state"),
            "--machine-id-file", str(workdir / "machine-id"),
            "--interval", str(interval_s),
            "--log-format", "json",
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "agent.log"

    def __enter__(self) -> HostAgent:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Registration is idempotent per (machine id, name): a machine id of the run's own.
        (self.workdir / "machine-id").write_text(self.workdir.name.ljust(32, "0")[:32] + "\n")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

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
        """The agent's JSON log lines."""
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
