"""The pieces install on their own (packages/): the client, the command line and both agents
are wheels whose declared dependencies are what their code imports and none of the service's
(FastAPI, SQLAlchemy, NumPy, SciPy); the guest and the host agent install from their wheels into
fresh virtualenvs, offline, from the machine's local package index, at the paths the systemd
units start, and run there."""

from __future__ import annotations

import ast
import email.parser
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from numa_balloon_testing.server import free_port
from tests.agents.systemd_units import exec_start, lay_out, missing, verify
from tests.agents.trees import guest_tree, host_tree

ROOT = Path(__file__).resolve().parents[2]
LOCAL_INDEX = os.environ.get("NUMA_BALLOON_PIP_INDEX", "file:///opt/pypi/simple")
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
SERVICE_ONLY = {"fastapi", "uvicorn", "sqlalchemy", "numpy", "scipy", "alembic", "psycopg"}
DISTRIBUTIONS = {  # distribution -> (its package, its declared requirements)
    "numa-balloon-client": (
        "numa_balloon_client",
        {"httpx>=0.27", "httpx-sse>=0.4", "pydantic>=2.7"},
    ),
    "numa-balloon-cli": (
        "numa_balloon_cli",
        {
            f"numa-balloon-client=={VERSION}",
            "pydantic>=2.7",
            "typer>=0.12",
            "rich>=13",
            "pyyaml>=6",
        },
    ),
    "numa-balloon-agent": (
        "numa_balloon_agent",
        {f"numa-balloon-client=={VERSION}", 'libvirt-python>=9.0; extra == "libvirt"'},
    ),
    "numa-balloon-guest": ("numa_balloon_guest", {f"numa-balloon-client=={VERSION}"}),
}
IMPORT_NAMES = {  # what a requirement lets the code import
    "numa-balloon-client": "numa_balloon_client",
    "httpx": "httpx",
    "httpx-sse": "httpx_sse",
    "pydantic": "pydantic",
    "typer": "typer",
    "rich": "rich",
    "pyyaml": "yaml",
}


def pip(*args: str, python: Path | None = None) -> subprocess.CompletedProcess[str]:
    """This environment's pip, offline: no config file, the local index only."""
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1")
    target = ["--python", str(python)] if python is not None else []
    proc = subprocess.run(
        [sys.executable, "-m", "pip", *target, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The four wheels, built from a copy of the sources (the checkout stays clean) with
    setuptools from the local index."""
    if not LOCAL_INDEX.startswith("file://") or not Path(LOCAL_INDEX[7:]).is_dir():
        missing(f"the local package index {LOCAL_INDEX}")
    work = tmp_path_factory.mktemp("packaging")
    src = work / "src"
    ignore = shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    shutil.copytree(ROOT / "packages", src / "packages", ignore=ignore)
    for _, (package, _) in DISTRIBUTIONS.items():
        shutil.copytree(ROOT / package, src / package, ignore=ignore)
    builder = venv(work / "build-env")
    pip("install", "-q", "--index-url", LOCAL_INDEX, "setuptools>=77", python=builder)
    out = work / "wheels"
    projects = [str(src / "packages" / name) for name in DISTRIBUTIONS]
    pip(
        "wheel", "-q", "--no-deps", "--no-build-isolation", "--index-url", LOCAL_INDEX,
        "-w", str(out), *projects, python=builder,
    )  # fmt: skip
    yield out


def wheel_of(wheels: Path, distribution: str) -> zipfile.ZipFile:
    (found,) = wheels.glob(f"{distribution.replace('-', '_')}-{VERSION}-py3-none-any.whl")
    return zipfile.ZipFile(found)


def metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    return email.parser.Parser().parsestr(wheel.read(name).decode())


def imports(source: str) -> set[str]:
    """Top-level names of the absolute imports in a module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("distribution", list(DISTRIBUTIONS))
def test_each_wheel_declares_what_it_imports_and_nothing_of_the_service(
    wheels: Path, distribution: str
) -> None:
    package, requirements = DISTRIBUTIONS[distribution]
    with wheel_of(wheels, distribution) as wheel:
        meta = metadata(wheel)
        assert meta["Name"] == distribution and meta["Version"] == VERSION
        assert set(meta.get_all("Requires-Dist") or []) == requirements
        modules = [n for n in wheel.namelist() if n.endswith(".py")]
        assert modules and all(n.startswith(f"{package}/") for n in modules), modules
        allowed = set(sys.stdlib_module_names) | {package} | {"__future__"}
        for requirement in requirements:
            if "extra ==" not in requirement:
                name = requirement.split(">")[0].split("=")[0]
                allowed.add(IMPORT_NAMES[name])
        for module in modules:
            used = imports(wheel.read(module).decode())
            assert used <= allowed, (module, sorted(used - allowed))
    assert not {r.split(">")[0].split("=")[0] for r in requirements} & SERVICE_ONLY


def test_the_client_wheel_carries_what_the_programs_share(wheels: Path) -> None:
    with wheel_of(wheels, "numa-balloon-client") as wheel:
        names = set(wheel.namelist())
    for module in ("exits", "logs", "loop"):
        assert f"numa_balloon_client/programs/{module}.py" in names
    assert "numa_balloon_client/py.typed" in names
    with wheel_of(wheels, "numa-balloon-agent") as wheel:
        assert "numa_balloon_agent/backends/__init__.py" in wheel.namelist()


def installed(python: Path) -> set[str]:
    listing = json.loads(pip("list", "--format", "json", python=python).stdout)
    return {p["name"].lower().replace("_", "-") for p in listing}


def test_the_guest_installs_alone_offline_where_its_unit_starts_it(
    wheels: Path, tmp_path: Path
) -> None:
    unit = "numa-balloon-guest.service"
    program = tmp_path / exec_start(unit).relative_to("/")  # /opt/numa-balloon-guest/bin/...
    python = venv(program.parents[1])
    pip(
        "install", "-q", "--index-url", LOCAL_INDEX, "--find-links", str(wheels),
        "numa-balloon-guest", python=python,
    )  # fmt: skip
    got = installed(python)
    assert {"numa-balloon-guest", "numa-balloon-client", "httpx", "pydantic"} <= got
    assert not got & (SERVICE_ONLY | {"numa-balloon-agent", "numa-balloon", "typer"})
    # It runs from there: the service is away, so one line and exit 3.
    root = guest_tree(tmp_path / "guest", [2])
    proc = subprocess.run(
        [str(program), "--once", "--url", f"http://127.0.0.1:{free_port()}", "--token", "t",
         "--sysfs-root", str(root), "--log-format", "text"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 3 and proc.stderr.count("\n") == 1, proc.stderr
    lay_out(tmp_path, unit)
    checked = verify(tmp_path, unit)  # ExecStart= names the program the install put there
    assert checked.returncode == 0 and not checked.stderr.strip(), checked.stderr


def test_the_host_agent_installs_offline_where_its_unit_starts_it(
    wheels: Path, tmp_path: Path
) -> None:
    unit = "numa-balloon-agent.service"
    program = tmp_path / exec_start(unit).relative_to("/")
    python = venv(program.parents[1])
    pip(
        "install", "-q", "--index-url", LOCAL_INDEX, "--find-links", str(wheels),
        "numa-balloon-agent", python=python,
    )  # fmt: skip
    assert not installed(python) & (SERVICE_ONLY | {"numa-balloon-guest", "typer"})
    tree = host_tree(tmp_path / "host", [4096, 4096])
    proc = subprocess.run(
        [str(program), "discover", "--sysfs-root", str(tree), "--name", "h"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert [p["memory_mib"] for p in json.loads(proc.stdout)["pnodes"]] == [4096, 4096]
    lay_out(tmp_path, unit)
    checked = verify(tmp_path, unit)
    assert checked.returncode == 0 and not checked.stderr.strip(), checked.stderr
