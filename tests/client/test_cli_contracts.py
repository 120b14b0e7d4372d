"""CLI commands for routes other branches build (API keys, evacuate, placements preview, the SSE
stream), written to their contract. Each test skips ONLY when this server answers 404 for the
route itself; once the branches are merged they run (and must pass) against the real thing.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from numa_balloon_client import Client
from numa_balloon_testing.server import Server
from tests.client.conftest import small_domain, two_socket
from tests.client.test_cli import SCRIPT, as_json, ok, run
from tests.conftest import ADMIN_TOKEN


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def skip_unless_routed(server: Server, path: str) -> None:
    """Skip when nothing is routed at `path` here. The probe is a GET, which changes nothing: a
    POST-only route answers it 405, a missing route 404 (whatever the ids in the path)."""
    r = httpx.get(server.url + path, timeout=10, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    if r.status_code == 404:
        pytest.skip(f"{path} is not on this branch yet (404)")


def test_keys_create_list_get_rotate_revoke(server: Server) -> None:
    skip_unless_routed(server, "/v1/api-keys")
    name = uniq("ci")
    created = as_json(server, "keys", "create", name, "--role", "viewer")
    assert created["name"] == name and created["secret"].startswith("nbk_")
    assert "secret (shown once): nbk_" in ok(
        server, "keys", "create", uniq("ops"), "--role", "operator"
    )
    assert name in ok(server, "keys", "list")
    listed = as_json(server, "keys", "list")
    assert any(k["id"] == created["id"] and "secret" not in k for k in listed)
    assert as_json(server, "keys", "get", created["id"])["role"] == "viewer"

    rotated = as_json(server, "keys", "rotate", created["id"])
    assert rotated["secret"].startswith("nbk_") and rotated["secret"] != created["secret"]
    as_viewer = {"NUMA_BALLOON_TOKEN": rotated["secret"]}
    assert run(server, "hosts", "list", env=as_viewer).returncode == 0
    assert (
        run(server, "hosts", "list", env={"NUMA_BALLOON_TOKEN": created["secret"]}).returncode == 1
    )

    assert "revoked" in ok(server, "keys", "revoke", created["id"])
    assert as_json(server, "keys", "get", created["id"])["revoked_at"] is not None
    denied = run(server, "hosts", "list", env=as_viewer)
    assert denied.returncode == 1 and "401" in denied.stderr
    bad_role = run(server, "keys", "create", uniq("x"), "--role", "root")
    assert bad_role.returncode == 2


def test_hosts_evacuate(server: Server, nb: Client) -> None:
    a = nb.create_host(two_socket(uniq("evac")))
    nb.create_host(two_socket(uniq("refuge")))
    nb.create_domain(small_domain(uniq("evm"), a.id))
    skip_unless_routed(server, f"/v1/hosts/{a.id}/evacuate")
    result = as_json(server, "hosts", "evacuate", a.name)
    assert result["host_id"] == a.id
    assert len(result["migrations"]) + len(result["unplaced"]) == 1
    for mig in result["migrations"]:
        nb.abort_migration(mig["id"])


def test_domains_placements_from_a_file(server: Server, nb: Client, tmp_path: Path) -> None:
    body = small_domain(uniq("pre"))
    skip_unless_routed(server, "/v1/placements")
    nb.create_host(two_socket(uniq("pl")))
    path = tmp_path / "d.json"
    path.write_text(json.dumps(body))
    ranked = as_json(server, "domains", "placements", "--file", str(path), "--limit", "1")
    hosts = ranked if isinstance(ranked, list) else ranked.get("hosts", ranked.get("items"))
    assert isinstance(hosts, list) and len(hosts) == 1
    assert "FEASIBLE" in ok(server, "domains", "placements", "-f", str(path))
    assert not [d for d in nb.iter_domains() if d.name == body["name"]]  # nothing created


def _follow(server: Server, *args: str) -> subprocess.Popen[str]:
    env = {"NUMA_BALLOON_URL": server.url, "NUMA_BALLOON_TOKEN": ADMIN_TOKEN, "COLUMNS": "200"}
    return subprocess.Popen(
        [str(SCRIPT), "-o", "json", "events", "watch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def _watch_sees_a_new_host(server: Server, nb: Client, *extra: str) -> None:
    head = max((e.seq for e in nb.iter_events()), default=0)
    proc = _follow(server, "--since", str(head), "--count", "1", *extra)
    try:
        time.sleep(1.5)  # the watcher is waiting (long-poll, or the poll fallback)
        host = nb.create_host(two_socket(uniq("w")))
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    event = json.loads(out.splitlines()[0])
    assert event["action"] == "host.created" and event["subject_id"] == host.id


def test_events_watch_follows_new_events(server: Server, nb: Client) -> None:
    """On the long-poll where the server has `wait`, on polling where it does not."""
    _watch_sees_a_new_host(server, nb)


def test_events_watch_on_the_sse_stream(server: Server, nb: Client) -> None:
    with httpx.stream(
        "GET",
        server.url + "/v1/events/stream",
        timeout=10,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as r:
        if r.status_code == 404:
            pytest.skip("GET /v1/events/stream is not on this branch yet (404)")
    _watch_sees_a_new_host(server, nb, "--stream")
