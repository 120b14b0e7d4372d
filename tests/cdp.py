"""Headless Chromium driven over the DevTools protocol, for pages whose script must run.

`chromium --dump-dom` shows a page as loaded; a page that changes itself later (the topology
view refreshing from its event stream) needs a browser that stays open: this one is started with
`--remote-debugging-port=0`, found through the `DevToolsActivePort` file it writes, and spoken
to over its WebSocket (the `websockets` package, which uvicorn already brings).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class Browser:
    def __init__(self, binary: str, profile: Path) -> None:
        self.proc = subprocess.Popen(
            [binary, *FLAGS, "--remote-debugging-port=0", f"--user-data-dir={profile}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"
        wait_for(lambda: port_file.exists() and len(port_file.read_text().split()) == 2, 30)
        port, path = port_file.read_text().split()
        self._stack = contextlib.ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(
            connect(f"ws://127.0.0.1:{port}{path}", max_size=None, ping_interval=None)
        )
        self._ids = itertools.count(1)

    def send(self, method: str, params: dict[str, Any] | None = None, **where: Any) -> Any:
        """One command (to a page when `sessionId=` is given); its result."""
        n = next(self._ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params or {}, **where}))
        while True:  # events of attached pages come in between: skip them
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("id") == n:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def page(self) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        return Page(self, session["sessionId"])

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class Page:
    def __init__(self, browser: Browser, session_id: str) -> None:
        self.browser = browser
        self.session_id = session_id

    def send(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return self.browser.send(method, params, sessionId=self.session_id)

    def eval(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 20) -> Any:
        """The value of `expression` once it is truthy."""
        value: list[Any] = [None]

        def holds() -> bool:
            value[0] = self.eval(expression)
            return bool(value[0])

        wait_for(holds, timeout_s, f"{expression} never held")
        return value[0]


def wait_for(cond: Callable[[], bool], timeout_s: float, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)
