"""The container files: docker-compose.yml validated by docker-compose itself, the Dockerfile's
promises checked by reading it (no Docker engine runs here, or in CI)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.exports.conftest import _require_tool

ROOT = Path(__file__).resolve().parents[1]


def compose_config() -> dict[str, object]:
    tool = shutil.which("docker-compose")
    _require_tool(tool is not None, "docker-compose (Debian package docker-compose)")
    assert tool is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMA_BALLOON_")}
    run = subprocess.run(
        [tool, "-f", str(ROOT / "docker-compose.yml"), "config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    config: dict[str, object] = yaml.safe_load(run.stdout)
    return config


def test_compose_file_validates_and_wires_the_cluster() -> None:
    config = compose_config()
    services = config["services"]
    assert isinstance(services, dict)
    assert set(services) == {"postgres", "migrate", "api-1", "api-2", "proxy", "demo"}
    pg = services["postgres"]
    assert pg["healthcheck"]["test"] and any("pgdata" in str(v) for v in pg["volumes"])
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["command"] == ["python", "-m", "service.cli", "migrate"]
    urls = set()
    for name in ("api-1", "api-2"):
        api = services[name]
        assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "/readyz" in " ".join(api["healthcheck"]["test"])
        urls.add(api["environment"]["NUMA_BALLOON_DATABASE_URL"])
    assert len(urls) == 1 and next(iter(urls)).startswith("postgresql+psycopg://")
    proxy = services["proxy"]
    assert {"api-1", "api-2"} <= set(proxy["depends_on"])
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "server api-1:8000" in conf and "server api-2:8000" in conf
    demo = services["demo"]
    assert demo["command"][:3] == ["python", "-m", "demo"] and "proxy" in " ".join(demo["command"])


def test_dockerfile_is_multi_stage_slim_non_root_and_checks_readiness() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    assert len(stages) >= 2 and all("slim" in s for s in stages)
    user = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert user and user[-1] not in ("root", "0")
    healthcheck = re.search(r"^HEALTHCHECK [^\n]*\\\n[^\n]*", text, flags=re.M)
    assert healthcheck is not None and "/readyz" in healthcheck.group(0)
    cmd = re.findall(r"^CMD (.*)$", text, flags=re.M)[-1]
    assert cmd.index("service.cli migrate") < cmd.index("uvicorn")
    assert "ENV NUMA_BALLOON" not in text  # settings only from the environment at run time
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "var"} <= set(ignored)
