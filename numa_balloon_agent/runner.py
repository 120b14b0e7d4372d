"""Runs the hypervisor's command-line tools (xl, xenstore-*). Tests point PATH at recording
scripts with the same names, so every argument list is the real syntax."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping, Sequence

NOT_FOUND = 127  # what a shell answers for a command it cannot find


class CommandFailed(RuntimeError):
    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"{shlex.join(argv)} exited {returncode}: {stderr.strip()}")
        self.argv = list(argv)
        self.returncode = returncode


class Runner:
    def __init__(self, env: Mapping[str, str] | None = None, timeout_s: float = 60) -> None:
        self.env = dict(env) if env is not None else None
        self.timeout_s = timeout_s

    def __call__(self, argv: Sequence[str]) -> str:
        try:
            proc = subprocess.run(
                list(argv),
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                env=self.env,
                check=False,
            )
        except FileNotFoundError as exc:
            raise CommandFailed(argv, NOT_FOUND, f"{argv[0]}: not found") from exc
        except subprocess.TimeoutExpired as exc:
            raise CommandFailed(argv, -1, f"no answer in {self.timeout_s:g} s") from exc
        except OSError as exc:  # found but not runnable (permissions, format)
            raise CommandFailed(argv, 126, f"{argv[0]}: {exc.strerror or exc}") from exc
        if proc.returncode != 0:
            raise CommandFailed(argv, proc.returncode, proc.stderr)
        return proc.stdout
