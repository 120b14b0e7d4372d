"""`numa-balloon` run in this process (Typer's CliRunner) against the module's real service, and
a helper that keeps changing something while a watching command runs."""

from __future__ import annotations

import _thread
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from typer.testing import CliRunner, Result

from numa_balloon_cli.main import app
from numa_balloon_testing.server import Server
from tests.conftest import ADMIN_TOKEN


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class InCli:
    """The CLI as a user runs it, configured through the environment (no profile file)."""

    env: dict[str, str | None]

    @classmethod
    def against(cls, server: Server) -> InCli:
        return cls(
            {
                "NUMA_BALLOON_URL": server.url,
                "NUMA_BALLOON_TOKEN": ADMIN_TOKEN,
                "NUMA_BALLOON_PROFILE": None,
                "XDG_CONFIG_HOME": "/nonexistent",
                "COLUMNS": "200",
            }
        )

    def run(
        self, *args: str, stdin: str | None = None, env: dict[str, str | None] | None = None
    ) -> Result:
        return CliRunner().invoke(
            app,
            list(args),
            input=stdin,
            env={**self.env, **(env or {})},
            prog_name="numa-balloon",
            catch_exceptions=False,  # a traceback is a failure, never "exit 1"
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        r = self.run(*args, stdin=stdin)
        assert r.exit_code == 0, f"{args}: {r.exit_code}\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def json(self, *args: str, stdin: str | None = None) -> Any:
        return json.loads(self.ok("-o", "json", *args, stdin=stdin))


@contextmanager
def meanwhile(change: Callable[[int], object], give_up_s: float = 60.0) -> Iterator[None]:
    """Call `change(i)` again and again in a thread while the block runs, so a watcher sees a
    change however late it starts looking. After `give_up_s` the main thread gets a
    KeyboardInterrupt (Ctrl-C: a watch ends), so a watcher that never sees one fails, not hangs."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def loop() -> None:
        i = 0
        deadline = threading.Timer(give_up_s, _thread.interrupt_main)
        deadline.start()
        try:
            while not stop.is_set():
                change(i)
                i += 1
                stop.wait(0.05)
        except Exception as exc:  # re-raised in the test, after the block
            errors.append(exc)
            _thread.interrupt_main()  # nothing will change any more: end the watch
        finally:
            deadline.cancel()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
    if errors:
        raise errors[0]
