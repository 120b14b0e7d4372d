"""The README cannot drift: its walk-throughs run against a live server and every `# ->`
comment is checked (the status, and each `"key": value` it shows somewhere in the body).

The blocks run as they are in bash with the real curl, jq and python3; only the two `export`
lines are given the live server's URL and token. A `curl` shell function wraps the real one to
keep each response's status line and body, in order, for the checks.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from numa_balloon_testing.server import Server, free_port
from tests.conftest import ADMIN_TOKEN
from tests.exports.conftest import _require_tool

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("## Walk-through: register", "## Walk-through: the seed", "## For orchestrators")
WRAPPER = r"""
set -eo pipefail
NB_CALLS=$(mktemp -d)
curl() {
  local n; n=$(printf %04d $(( $(ls "$NB_CALLS" | wc -l) / 2 + 1 )))
  touch "$NB_CALLS/$n.b"
  command curl -D "$NB_CALLS/$n.h" "$@" | tee "$NB_CALLS/$n.b"
}
echo "NB_CALLS=$NB_CALLS" >&2
"""
ANNOTATION = re.compile(r"#\s*->\s*(\d{3})(.*)$")
PAIR = re.compile(r'"(\w+)":\s*("(?:[^"\\]|\\.)*"|-?\d+|true|false|null|\[\]|\{[^{}]*\})')


def sh_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = []
    for title in SECTIONS:
        section = text[text.index(title) :]
        section = section[: section.find("\n## ", 1)]
        blocks += re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 3
    return blocks


def expectations(script: str) -> list[tuple[int | None, str]]:
    """One (status, annotation) per curl call in the script, in order."""
    out: list[tuple[int | None, str]] = []
    for line in script.splitlines():
        code, _, comment = (
            line.partition("# ") if not line.lstrip().startswith("#") else ("", "", line)
        )
        out += [(None, "")] * len(re.findall(r"(?:^|[\s($])curl\s", code))
        found = ANNOTATION.search(
            "# " + comment if comment and not comment.startswith("#") else comment
        )
        if found:
            assert out and out[-1][0] is None, f"annotation without its curl: {line}"
            out[-1] = (int(found.group(1)), found.group(2))
    return out


def contains(body: Any, key: str, value: Any) -> bool:
    if isinstance(body, dict):
        if key in body and body[key] == value:
            return True
        return any(contains(v, key, value) for v in body.values())
    if isinstance(body, list):
        return any(contains(v, key, value) for v in body)
    return False


def run_walkthroughs(url: str, token: str) -> tuple[str, list[tuple[int, str]]]:
    script = "\n".join(sh_blocks())
    script = re.sub(r"^export NB=.*$", f"export NB={url}", script, flags=re.M)
    script = re.sub(r"^export TOKEN=.*$", f"export TOKEN={token}", script, flags=re.M)
    run = subprocess.run(
        ["bash", "-c", WRAPPER + script], capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    calls_dir = Path(re.search(r"NB_CALLS=(\S+)", run.stderr).group(1))  # type: ignore[union-attr]
    calls = []
    for head in sorted(calls_dir.glob("*.h")):
        status = int(head.read_text().split("\n", 1)[0].split()[1])
        calls.append((status, head.with_suffix(".b").read_text()))
    shutil.rmtree(calls_dir)
    return script, calls


def test_the_readme_walkthroughs_do_what_their_comments_say(sqlite_url: str) -> None:
    for tool in ("curl", "jq"):
        _require_tool(shutil.which(tool) is not None, f"{tool} (Debian package {tool})")
    with Server(sqlite_url, admin_token=ADMIN_TOKEN) as srv:
        script, calls = run_walkthroughs(srv.url, ADMIN_TOKEN)
    expected = expectations(script)
    assert len(calls) == len(expected), (len(calls), len(expected))
    checked = 0
    for i, ((status, body), (want, note)) in enumerate(zip(calls, expected, strict=True)):
        where = f"call {i + 1}: {note.strip()}\n{body[:600]}"
        if want is None:
            assert status < 500, where
            continue
        assert status == want, f"status {status}, README says {want}: {where}"
        pairs = [(k, v) for k, v in PAIR.findall(note) if "..." not in v]
        if pairs:
            parsed = json.loads(body)
            for key, raw in pairs:
                assert contains(parsed, key, json.loads(raw)), f"no {key}={raw}: {where}"
                checked += 1
    assert checked >= 20


def test_make_demo_leaves_the_cluster_up_until_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo", "--local", "--serve", "--port", str(port),
         "--workdir", str(tmp_path / "svc")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "admin token:" in line or not line:
                break
        token = lines[-1].split("admin token:")[-1].strip()
        assert any(f"http://127.0.0.1:{port}/docs" in line for line in lines), "".join(lines)
        hosts = httpx.get(
            f"http://127.0.0.1:{port}/v1/hosts", headers={"Authorization": f"Bearer {token}"}
        )
        assert hosts.status_code == 200 and len(hosts.json()["items"]) == 4
        assert httpx.get(f"http://127.0.0.1:{port}/docs").status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
