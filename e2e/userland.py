"""The guest's Python and its guest agent, as two directory trees cached under `var/e2e/` and
packed into the initramfs as layers (see `e2e.image`):

- the interpreter: Debian's own `python3.11` packages and the libraries it loads, fetched with
  `apt-get download` and unpacked with `dpkg-deb -x` like the kernel (never installed on the
  host), pruned of what an agent never imports, and compiled once to `.pyc` by that interpreter
  (in a chroot: nothing is mounted);
- the agent: its own distribution (`packages/numa-balloon-guest`, with the client it depends
  on) built as wheels, and installed with everything it needs by `pip install --target` into
  the interpreter's local site directory (wheels for CPython 3.11 on x86-64, pinned by
  requirements.lock). Its key covers the agent's source, so a change to it rebuilds only this
  layer.

Before either is used, the guest's interpreter imports the agent in a chroot of the two trees:
a missing library fails here, not in a guest that boots for a minute first.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from e2e.system import Say, run

#: Bump when what the trees hold changes in a way their keys cannot see.
FORMAT = 1
ROOT = Path(__file__).resolve().parents[1]
#: Debian package -> why the guest needs it.
PACKAGES = {
    "python3.11-minimal": "the interpreter",
    "libpython3.11-minimal": "its core modules",
    "libpython3.11-stdlib": "the standard library (ssl, asyncio, json, ...)",
    "libc6": "the C library",
    "libssl3": "ssl and hashlib (httpx imports ssl)",
    "libexpat1": "linked by python3.11",
    "zlib1g": "linked by python3.11",
    "libgcc-s1": "loaded by pydantic-core (Rust)",
}
#: What the agent never imports (about a third of the packages' size).
PRUNE = (
    "usr/share",
    "usr/lib/x86_64-linux-gnu/gconv",
    "usr/lib/python3.11/config-3.11-x86_64-linux-gnu",
    *(
        f"usr/lib/python3.11/{name}"
        for name in (
            "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
            "distutils", "sqlite3", "dbm", "curses", "turtle.py",
        )
    ),
)  # fmt: skip
PYTHON = "/usr/bin/python3.11"
#: Debian's python reads this site directory first (its own site.py).
SITE = "usr/local/lib/python3.11/dist-packages"
#: The guest agent's distribution and the one it depends on: (project directory, package).
AGENT_DISTRIBUTIONS = (
    ("packages/numa-balloon-guest", "numa_balloon_guest"),
    ("packages/numa-balloon-client", "numa_balloon_client"),
)
AGENT = "numa-balloon-guest"
_DONE = ".complete"


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256(f"format {FORMAT}\n".encode())
    for part in parts:
        h.update(part + b"\0")
    return h.hexdigest()[:20]


def candidates(packages: Iterable[str] = PACKAGES) -> dict[str, str]:
    """package -> the version apt would fetch (one `apt-cache policy` for all of them)."""
    names = list(packages)
    out = run(["apt-cache", "policy", *names])
    found: dict[str, str] = {}
    current = ""
    for line in out.splitlines():
        if not line.startswith(" ") and line.endswith(":"):
            current = line[:-1]
        elif "Candidate:" in line and current:
            version = line.split("Candidate:", 1)[1].strip()
            if version and version != "(none)":
                found[current.split(":")[0]] = version
    missing = [n for n in names if n not in found]
    if missing:
        raise RuntimeError(f"apt has no candidate for {' '.join(missing)}")
    return found


def interpreter(cache: Path, say: Say) -> Path:
    """The pruned, compiled interpreter tree, from the cache or made into it."""
    versions = candidates()
    key = _digest(
        [f"{p}={v}".encode() for p, v in sorted(versions.items())] + [repr(PRUNE).encode()]
    )
    target = cache / f"python-{key}"
    if (target / _DONE).exists():
        return target
    say(f"guest python: apt-get download {len(versions)} Debian packages, dpkg-deb -x, compile")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".python-") as tmp:
        work = Path(tmp)
        run(["apt-get", "download", "-q", *(f"{p}={v}" for p, v in versions.items())], cwd=work)
        root = work / "root"
        for deb in sorted(work.glob("*.deb")):
            run(["dpkg-deb", "-x", str(deb), str(root)])
        for rel in PRUNE:
            path = root / rel
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        _in_chroot(root, "-m", "compileall", "-q", *PYC, "/usr/lib/python3.11")
        (root / _DONE).write_text("".join(f"{p} {v}\n" for p, v in sorted(versions.items())))
        _replace(target, root)
    return target


def agent(cache: Path, python: Path, say: Say) -> Path:
    """The agent's tree (its site directory, `usr/local/lib/python3.11/dist-packages`) for the
    interpreter tree `python`, from the cache or made into it and checked."""
    lock = (ROOT / "requirements.lock").read_bytes()
    sources = sorted(
        p
        for project, package in AGENT_DISTRIBUTIONS
        for p in [ROOT / project / "pyproject.toml", *(ROOT / package).rglob("*.py")]
        if "__pycache__" not in p.parts
    )
    key = _digest(
        [python.name.encode(), lock]
        + [str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes() for p in sources]
    )
    target = cache / f"agent-{key}"
    if (target / _DONE).exists():
        return target
    say(f"guest agent: pip wheel {AGENT} (and the client), pip install --target")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".agent-") as tmp:
        work = Path(tmp)
        wheels = _wheels(sources, work)
        built = work / "root"
        run(
            [
                sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                "--no-compile", "--target", str(built / SITE), "--find-links", str(wheels),
                "--constraint", str(ROOT / "requirements.lock"), "--only-binary=:all:",
                "--implementation", "cp", "--python-version", "3.11",
                "--platform", "manylinux2014_x86_64", AGENT,
            ]
        )  # fmt: skip
        shutil.rmtree(built / SITE / "bin", ignore_errors=True)  # scripts for the host's python
        _compile_and_check(python, built, work / "chroot")
        (built / _DONE).write_text(key + "\n")
        _replace(target, built)
    return target


def _wheels(sources: list[Path], work: Path) -> Path:
    """The distributions' wheels, built from a copy of their sources (their projects point
    two levels up for the packages; building writes into the tree it builds)."""
    tree = work / "src"
    for p in sources:
        dest = tree / p.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, dest)
    out = work / "wheels"
    projects = [str(tree / project) for project, _ in AGENT_DISTRIBUTIONS]
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), *projects])
    return out


def _compile_and_check(python: Path, built: Path, chroot: Path) -> None:
    """In a chroot of both trees (copied: a chroot sees one root; nothing is mounted), the
    guest's interpreter compiles the agent's tree and then imports the agent and builds its
    HTTP client; the `.pyc` files go back into `built`. RuntimeError says what failed."""
    shutil.copytree(python, chroot, symlinks=True)
    shutil.copytree(built, chroot, symlinks=True, dirs_exist_ok=True)
    _in_chroot(chroot, "-m", "compileall", "-q", *PYC, "/" + SITE)
    probe = (
        "import numa_balloon_guest.cli, numa_balloon_guest.agent; "
        "from numa_balloon_client import Client; Client('http://10.0.2.100', 'x').close()"
    )
    _in_chroot(chroot, "-c", probe)
    shutil.copytree(chroot / SITE, built / SITE, dirs_exist_ok=True)


#: Unchecked-hash `.pyc`: the image never changes under them, so imports need not stat sources.
PYC = ("--invalidation-mode", "unchecked-hash")


def _in_chroot(root: Path, *args: str) -> None:
    proc = subprocess.run(
        [shutil.which("chroot") or "/usr/sbin/chroot", str(root), PYTHON, *args],
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"the guest's python ({' '.join(args[:3])}) in {root}: "
            f"{(proc.stderr or proc.stdout)[-2000:]}"
        )


def _replace(target: Path, built: Path) -> None:
    """`built` becomes `target`; earlier trees of its kind (another key) go."""
    if target.exists():
        shutil.rmtree(target)
    os.replace(built, target)
    kind = target.name.rsplit("-", 1)[0]
    for old in target.parent.glob(f"{kind}-*"):
        if old != target and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
