"""The README cannot drift: its walk-throughs run, in order, as one story against a live server,
and every `# ->` comment is checked.

The story is every ```sh and ```python block of the sections in STORY, in the README's order:
the command line's own blocks included, from a fresh database, as a newcomer runs them after
`make run` (the Python snippet runs with the service's Python). Blocks with another word after
the language (```sh tls: `tests/test_tls.py` runs it) are not part of it. They run as they are
in bash with the real curl, jq, numa-balloon, numa-balloon-agent and python3; only the live
server's URL replaces `http://127.0.0.1:8000` (its token reaches `service.cli admin-token` as
`make run`'s does, through NUMA_BALLOON_ADMIN_TOKEN).

Wrappers record each call of curl (status and body), numa-balloon, numa-balloon-agent and the
Python snippet (exit code, stdout, stderr), in order. An annotation belongs to the call before
it: `# -> 201 {...}` (curl) or `# -> exit 1 {...}` (the others; without one, exit 0 is expected
and curl needs a 2xx). The JSON it shows is matched at its exact paths: every key at the same
place in the answer, lists element by element (a last element "..." allows more), "..." for any
value and "nbh_..." for a prefix. An annotation without JSON lists `fragments` in backticks that
the body or the output must contain. A command outside the wrappers that fails (jq, an
assignment, python3 -c) fails the story too. The story goes on after a failure, so one run lists
every problem; a step is stopped after STEP_TIMEOUT_S.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from numa_balloon_testing.server import Server, free_port
from tests.conftest import ADMIN_TOKEN
from tests.exports.conftest import _require_tool

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
STORY = (
    "## The command line and the Python client",
    "## Walk-through: register",
    "## Walk-through: the seed",
    "## For orchestrators",
    "## Who may do what",
    "## Agents",
)
URL_IN_README = "http://127.0.0.1:8000"
CALLS = ("curl", "numa-balloon", "numa-balloon-agent")
CALL = re.compile(r"(?:^|[\s($|;&])(curl|numa-balloon-agent|numa-balloon)(?=\s)")
ANNOTATION = re.compile(r"#\s*->\s*(?:(\d{3})|exit (\d+))(.*)$")
PYTHON_CALL = "numa_balloon_python"
STEP_TIMEOUT_S = 60  # a step that runs longer (a wait nothing ends) is stopped and fails
WRAPPER = r"""
set -E -o pipefail
NB_CALLS=$(mktemp -d)
echo "NB_CALLS=$NB_CALLS" >&2
trap 'echo "line $LINENO: $BASH_COMMAND" >> "$NB_CALLS/errors"' ERR
nb_next() {
  local n; n=$(( $(cat "$NB_CALLS/count" 2>/dev/null || echo 0) + 1 ))
  echo $n > "$NB_CALLS/count"; printf %04d $n
}
curl() {
  local f; f="$NB_CALLS/$(nb_next)"; echo curl > "$f.kind"; touch "$f.out"
  command curl --max-time "$NB_STEP_TIMEOUT_S" -D "$f.h" "$@" | tee "$f.out"
}
nb_program() {
  local f; f="$NB_CALLS/$(nb_next)"; echo "$1" > "$f.kind"
  { timeout -s INT "$NB_STEP_TIMEOUT_S" "$@" 2> "$f.err" && echo 0 > "$f.rc" || echo $? > "$f.rc"
  } | tee "$f.out"
  cat "$f.err" >&2
}
numa-balloon() { nb_program numa-balloon "$@"; }
numa-balloon-agent() { nb_program numa-balloon-agent "$@"; }
numa_balloon_python() { nb_program python3 -; }
"""


@dataclass
class Expected:
    kind: str
    line: str
    status: int | None = None  # HTTP status (curl) or exit code (the others)
    note: str = ""


@dataclass
class Call:
    kind: str
    status: int  # HTTP status (curl) or exit code
    out: str
    err: str = ""


def story_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of every block of the story, in the README's order."""
    sections = re.split(r"(?m)^(?=## )", text)
    blocks: list[tuple[str, str]] = []
    found = set()
    for section in sections:
        title = next((t for t in STORY if section.startswith(t)), None)
        if title is None:
            continue
        found.add(title)
        for lang, extra, code in re.findall(r"(?ms)^```(\w+)([^\n]*)\n(.*?)^```", section):
            if (lang, extra.strip()) in (("sh", ""), ("sh", "cli"), ("python", "")):
                blocks.append((lang, code))
    assert found == set(STORY), f"sections not found: {set(STORY) - found}"
    return blocks


def script_of(blocks: list[tuple[str, str]], url: str) -> str:
    parts = []
    for lang, code in blocks:
        if lang == "python":
            assert "\nNB_PY\n" not in code
            code = f"{PYTHON_CALL} <<'NB_PY'\n{code}NB_PY\n"
        parts.append(code)
    return "\n".join(parts).replace(URL_IN_README, url)


def code_and_comment(line: str) -> tuple[str, str]:
    if line.lstrip().startswith("#"):
        return "", line.lstrip()
    code, sep, comment = line.partition(" #")
    return code, (sep.strip() + comment) if sep else ""


def expectations(script: str) -> list[Expected]:
    """One Expected per wrapped call in the script, in order, with its annotation if any."""
    out: list[Expected] = []
    annotated: set[int] = set()
    lines = script.splitlines()
    for i, line in enumerate(lines):
        code, comment = code_and_comment(line)
        if code.startswith(PYTHON_CALL):
            out.append(Expected("python3", "the Python snippet"))
        else:
            out += [Expected(m.group(1), line.strip()) for m in CALL.finditer(code)]
        found = ANNOTATION.search(comment)
        if not found:
            continue
        assert out and len(out) - 1 not in annotated, f"annotation without its call: {line}"
        annotated.add(len(out) - 1)
        note = found.group(3)
        # An annotation goes on over the indented comment lines after it.
        for more in lines[i + 1 :]:
            if not re.match(r"\s*#\s{2,}", more):
                break
            note += " " + more.strip().lstrip("#").strip()
        expected = out[-1]
        if found.group(1):
            assert expected.kind == "curl", f"an HTTP status on a {expected.kind} call: {line}"
            expected.status = int(found.group(1))
        else:
            assert expected.kind != "curl", f"an exit code on a curl call: {line}"
            expected.status = int(found.group(2))
        expected.note = note.strip()
    return out


def shown(note: str) -> Any:
    """The JSON document an annotation shows, or None."""
    note = note.strip()
    if not note.startswith(("{", "[")):
        return None
    value, _ = json.JSONDecoder().raw_decode(note)
    return value


def mismatches(want: Any, got: Any, path: str = "$") -> list[str]:
    """Where `got` differs from `want` at `want`'s exact paths."""
    if isinstance(want, str) and want.endswith("..."):
        if want == "...":
            return []
        ok = isinstance(got, str) and got.startswith(want[:-3])
        return [] if ok else [f"{path}: {got!r} does not start with {want[:-3]!r}"]
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{path}: {type(got).__name__}, not an object"]
        problems = []
        for key, value in want.items():
            if key not in got:
                problems.append(f"{path}.{key}: missing (keys: {', '.join(got)})")
            else:
                problems += mismatches(value, got[key], f"{path}.{key}")
        return problems
    if isinstance(want, list):
        if not isinstance(got, list):
            return [f"{path}: {type(got).__name__}, not a list"]
        more = bool(want) and want[-1] == "..."
        items = want[:-1] if more else want
        if len(got) < len(items) or (not more and len(got) != len(items)):
            return [f"{path}: {len(got)} items, README shows {len(items)}{'+' if more else ''}"]
        return [p for i, w in enumerate(items) for p in mismatches(w, got[i], f"{path}[{i}]")]
    if want != got or type(want) is not type(got):
        return [f"{path}: {got!r}, README says {want!r}"]
    return []


def check(calls: list[Call], expected: list[Expected]) -> tuple[list[str], int]:
    """Every difference between the calls and the README's annotations; paths checked."""
    problems: list[str] = []
    checked = 0
    if len(calls) != len(expected):
        problems.append(f"{len(calls)} calls ran, the README has {len(expected)}")
    for i, (call, want) in enumerate(zip(calls, expected, strict=False)):
        where = f"call {i + 1} ({want.line[:90]})"
        text = call.out if call.kind == "curl" else call.out + call.err
        if call.kind != want.kind:
            problems.append(f"{where}: ran {call.kind}, README has {want.kind} here")
            continue
        if want.status is None:
            ok = 200 <= call.status < 300 if call.kind == "curl" else call.status == 0
            if not ok:
                problems.append(f"{where}: {call.status}\n{text[-800:]}")
            continue
        if call.status != want.status:
            problems.append(f"{where}: {call.status}, README says {want.status}\n{text[-800:]}")
            continue
        try:
            document = shown(want.note)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: the annotation's JSON does not parse ({exc}): {want.note}")
            continue
        if document is not None:
            try:
                got = json.loads(call.out)
            except json.JSONDecodeError:
                problems.append(f"{where}: not JSON, README shows {want.note}\n{call.out[:400]}")
                continue
            found = mismatches(document, got)
            problems += [f"{where}: {p}" for p in found]
            checked += 1 if not found else 0
        for fragment in re.findall(r"`([^`]+)`", want.note) if document is None else []:
            if fragment not in text:
                problems.append(f"{where}: no `{fragment}` in\n{text[-800:]}")
            else:
                checked += 1
    return problems, checked


def run_story(url: str, token: str, workdir: Path) -> tuple[str, list[Call], list[str]]:
    script = script_of(story_blocks(README.read_text()), url)
    (workdir / "docs").symlink_to(ROOT / "docs")
    python = workdir / ".venv" / "bin" / "python"  # the README's .venv/bin/python: this one
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        NUMA_BALLOON_ADMIN_TOKEN=token,
        NB_STEP_TIMEOUT_S=os.environ.get("NB_STEP_TIMEOUT_S", str(STEP_TIMEOUT_S)),
    )
    env.pop("NUMA_BALLOON_PROFILE", None)
    run = subprocess.run(
        ["bash", "-c", WRAPPER + script],
        capture_output=True, text=True, timeout=300, cwd=workdir, env=env,
    )  # fmt: skip
    calls_dir = Path(re.search(r"NB_CALLS=(\S+)", run.stderr).group(1))  # type: ignore[union-attr]
    calls = []
    for kind in sorted(calls_dir.glob("*.kind")):
        name = kind.read_text().strip()
        out = kind.with_suffix(".out").read_text()
        if name == "curl":
            head = kind.with_suffix(".h")
            lines = head.read_text().splitlines() if head.exists() else []
            statuses = [int(x.split()[1]) for x in lines if x.startswith("HTTP/")]
            calls.append(Call("curl", statuses[-1] if statuses else 0, out))
        else:
            status = int(kind.with_suffix(".rc").read_text())
            calls.append(Call(name, status, out, kind.with_suffix(".err").read_text()))
    errors = calls_dir / "errors"
    failed = errors.read_text().splitlines() if errors.exists() else []
    if run.returncode:
        failed.append(f"bash exited {run.returncode}: {run.stderr[-1500:]}")
    shutil.rmtree(calls_dir)
    return script, calls, failed


def test_the_readme_runs_as_one_story_and_its_annotations_hold(
    sqlite_url: str, tmp_path: Path
) -> None:
    for tool in ("curl", "jq"):
        _require_tool(shutil.which(tool) is not None, f"{tool} (Debian package {tool})")
    # The story registers this machine from sysfs, and its host agent finds that host again by
    # the machine id.
    _require_tool(Path("/sys/devices/system/node").is_dir(), "sysfs NUMA nodes")
    _require_tool(Path("/etc/machine-id").is_file(), "/etc/machine-id (systemd-machine-id-setup)")
    with Server(sqlite_url, admin_token=ADMIN_TOKEN) as srv:
        script, calls, failed = run_story(srv.url, ADMIN_TOKEN, tmp_path)
    expected = expectations(script)
    problems, checked = check(calls, expected)
    problems += [f"a command of the story failed: {line}" for line in failed]
    assert not problems, f"{len(problems)} problems:\n\n" + "\n\n".join(problems)
    annotated = sum(1 for e in expected if e.status is not None)
    assert annotated >= 40 and checked >= 40, (annotated, checked)
    assert {e.kind for e in expected} == {*CALLS, "python3"}


def test_annotations_are_matched_at_their_exact_paths() -> None:
    """The old README's flat `capacity_mib` passed when any nested object had it; now the path
    must be the answer's."""
    accounting = {
        "host_id": "h",
        "pnodes": [{"index": 0, "capacity_mib": 258048}, {"index": 1, "capacity_mib": 260096}],
        "domains": [],
    }
    assert mismatches({"capacity_mib": 258048}, accounting) == [
        "$.capacity_mib: missing (keys: host_id, pnodes, domains)"
    ]
    assert (
        mismatches({"pnodes": [{"capacity_mib": 258048}, {"capacity_mib": 260096}]}, accounting)
        == []
    )
    assert mismatches({"pnodes": [{"capacity_mib": 258048}]}, accounting) == [
        "$.pnodes: 2 items, README shows 1"
    ]
    assert mismatches({"pnodes": [{"index": 0}, "..."]}, accounting) == []
    assert mismatches({"pnodes": [{}, {"index": 0}]}, accounting) == [
        "$.pnodes[1].index: 1, README says 0"
    ]
    assert mismatches({"host_id": "...", "domains": []}, accounting) == []
    assert mismatches({"token": "nbh_..."}, {"token": "nbk_x"}) != []
    assert mismatches({"feasible": 1}, {"feasible": True}) != []


def test_an_annotation_goes_on_over_its_indented_comment_lines() -> None:
    script = """curl -sS -X POST $NB/v1/hosts -d '{}'
# -> 422 {"type": "/problems/validation-error",
#         "errors": [{"loc": ["body"]}]} (and prose after it)
# A comment of the next command, not of this annotation.
numa-balloon hosts list   # -> exit 1 `refused`
numa-balloon hosts get x
"""
    curl, cli, other = expectations(script)
    assert (curl.kind, curl.status) == ("curl", 422)
    assert shown(curl.note) == {
        "type": "/problems/validation-error",
        "errors": [{"loc": ["body"]}],
    }
    assert (cli.kind, cli.status, cli.note) == ("numa-balloon", 1, "`refused`")
    assert (other.kind, other.status) == ("numa-balloon", None)


def test_every_annotation_is_in_the_story() -> None:
    """An `# ->` outside the blocks the story runs would be checked by nothing."""
    text = README.read_text()
    anywhere = re.compile(ANNOTATION.pattern, re.M)
    in_story = sum(len(anywhere.findall(code)) for _, code in story_blocks(text))
    assert len(anywhere.findall(text)) == in_story > 40


def test_the_example_files_are_the_walkthroughs_bodies() -> None:
    """docs/examples/compute-07.json is the register walk-through's body, guest.yaml the seed's
    domain body (named guest-2, pinned by the CLI's --host instead of host_id)."""
    script = script_of(story_blocks(README.read_text()), URL_IN_README)
    host = re.search(r"-d '(\{\"name\": \"compute-07\".*?\})'", script, flags=re.S)
    assert host is not None
    examples = ROOT / "docs" / "examples"
    assert json.loads(host.group(1)) == json.loads((examples / "compute-07.json").read_text())
    domain = re.search(r'DOMAIN=\$\(curl .*?-d "(\{.*?\})"', script, flags=re.S)
    assert domain is not None
    body = json.loads(re.sub(r"\\(.)", r"\1", domain.group(1)).replace("$ONE", "one"))
    guest = yaml.safe_load((examples / "guest.yaml").read_text())
    assert {**body, "name": "guest-2"} == {**guest, "host_id": "one"}


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
