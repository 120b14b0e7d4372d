"""`numa-balloon` as a user runs it, against a real uvicorn (SQLite, PostgreSQL): in this process
through Typer's CliRunner, and as the installed script in a subprocess for the exit codes and the
shell completion (the process boundary itself).

Each test checks the human output and the JSON document, and the exit codes scripts rely on:
0 ok, 1 refused (4xx, unknown name), 2 usage, 3 unavailable, 4 the operation failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from numa_balloon_cli.main import app as cli_app
from numa_balloon_client import Client
from numa_balloon_testing.server import Server, free_port
from tests.client.conftest import small_domain, two_socket
from tests.client.sim import Sim
from tests.client.sysfs_trees import memory_only
from tests.client.sysfs_trees import two_socket as two_socket_tree
from tests.conftest import ADMIN_TOKEN

SCRIPT = Path(sys.executable).with_name("numa-balloon")


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def run(
    server: Server | None, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> Ran:
    """`numa-balloon` in this process, configured through the environment as a user would."""
    base: dict[str, str | None] = {k: None for k in os.environ if k.startswith("NUMA_BALLOON_")}
    base.update(COLUMNS="200", XDG_CONFIG_HOME=os.environ.get("NB_TEST_XDG", "/nonexistent"))
    if server is not None:
        base.update(NUMA_BALLOON_URL=server.url, NUMA_BALLOON_TOKEN=ADMIN_TOKEN)
    base.update(env or {})
    r = CliRunner().invoke(
        cli_app,
        list(args),
        input=stdin,
        env=base,
        prog_name="numa-balloon",
        catch_exceptions=False,  # a traceback is a failure, never "exit 1"
    )
    return Ran(r.exit_code, r.stdout, r.stderr)


def run_process(
    server: Server | None, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed `numa-balloon` script, configured through the environment as a user would."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("NUMA_BALLOON_")}
    base.update(COLUMNS="200", XDG_CONFIG_HOME=os.environ.get("NB_TEST_XDG", "/nonexistent"))
    if server is not None:
        base.update(NUMA_BALLOON_URL=server.url, NUMA_BALLOON_TOKEN=ADMIN_TOKEN)
    base.update(env or {})
    cmd = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "numa_balloon_cli"]
    return subprocess.run(
        [*cmd, *args], input=stdin, capture_output=True, text=True, env=base, timeout=120
    )


def ok(server: Server | None, *args: str, stdin: str | None = None) -> str:
    r = run(server, *args, stdin=stdin)
    assert r.returncode == 0, f"{args}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def as_json(server: Server, *args: str, stdin: str | None = None) -> Any:
    return json.loads(ok(server, "-o", "json", *args, stdin=stdin))


def write(tmp_path: Path, name: str, data: object, fmt: str = "json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data) if fmt == "json" else yaml.safe_dump(data))
    return str(path)


def test_hosts_every_command(server: Server, tmp_path: Path) -> None:
    name = uniq("h")
    out = ok(
        server, "hosts", "create", "--file", write(tmp_path, "h.yaml", two_socket(name), "yaml")
    )
    assert f"host {name} registered" in out and "agent token (shown once): nbh_" in out
    other = as_json(server, "hosts", "create", "-f", "-", stdin=json.dumps(two_socket(name + "b")))
    assert other["name"] == name + "b" and other["agent_token"].startswith("nbh_")

    listed = ok(server, "hosts", "list")
    assert name in listed and "30720" in listed  # 2 x (16384 - 1024) MiB
    rows = as_json(server, "hosts", "list", "--name", name)
    assert [h["name"] for h in rows] == [name]
    host_id = rows[0]["id"]
    by_id = as_json(server, "hosts", "get", host_id)
    assert by_id["name"] == name and by_id["distances"] == [[10, 21], [21, 10]]
    assert "21" in ok(server, "hosts", "get", name)

    acc = as_json(server, "hosts", "accounting", name)
    assert [p["free_mib"] for p in acc["pnodes"]] == [15360, 15360]
    assert "ALLOCATED MiB" in ok(server, "hosts", "accounting", name)

    assert "active -> maintenance" in ok(server, "hosts", "set-state", name, "maintenance")
    assert as_json(server, "hosts", "set-state", host_id, "active")["state"] == "active"
    assert yaml.safe_load(ok(server, "-o", "yaml", "hosts", "get", name))["state"] == "active"

    assert f"host {name} deleted" in ok(server, "hosts", "delete", name)
    gone = run(server, "hosts", "get", name)
    assert gone.returncode == 1 and f"no host named or with id '{name}'" in gone.stderr


def test_register_from_sysfs(server: Server, tmp_path: Path) -> None:
    tree = two_socket_tree(tmp_path / "node")
    name = uniq("sysfs")
    body = as_json(
        server,
        "hosts",
        "register",
        "--from-sysfs",
        str(tree),
        "--name",
        name,
        "--reserved-mib",
        "2048",
        "--dry-run",
    )
    assert [p["cpus"] for p in body["pnodes"]] == [32, 32]
    out = ok(
        server,
        "hosts",
        "register",
        "--from-sysfs",
        str(tree),
        "--name",
        name,
        "--reserved-mib",
        "2048",
    )
    assert f"host {name} registered" in out
    host = as_json(server, "hosts", "get", name)
    assert [p["memory_mib"] for p in host["pnodes"]] == [263_999_708 // 1024, 264_210_432 // 1024]
    assert [p["reserved_mib"] for p in host["pnodes"]] == [2048, 2048]

    # A memory-only node (cpus 0): the service decides; today it refuses, with the location.
    cxl = run(
        server,
        "hosts",
        "register",
        "--from-sysfs",
        str(memory_only(tmp_path / "cxl")),
        "--name",
        uniq("cxl"),
    )
    if cxl.returncode != 0:
        assert cxl.returncode == 1 and "pnodes.1.cpus" in cxl.stderr

    if Path("/sys/devices/system/node/node0/meminfo").exists():  # this machine, by default
        here = as_json(server, "hosts", "register", "--from-sysfs", "--name", "here", "--dry-run")
        assert here["name"] == "here" and len(here["distances"]) == len(here["pnodes"]) >= 1

    missing = run(server, "hosts", "register", "--from-sysfs", str(tmp_path / "absent"))
    assert missing.returncode == 2 and "is not a directory" in missing.stderr
    no_flag = run(server, "hosts", "register", str(tree))
    assert no_flag.returncode == 2 and "--from-sysfs" in no_flag.stderr


def _host(server: Server, tmp_path: Path, name: str) -> dict[str, Any]:
    return as_json(
        server, "hosts", "create", "-f", write(tmp_path, f"{name}.json", two_socket(name))
    )


def test_domains_every_command(server: Server, tmp_path: Path) -> None:
    host = _host(server, tmp_path, uniq("dh"))
    name = uniq("vm")
    body = small_domain(name)
    out = ok(
        server, "domains", "create", "-f", write(tmp_path, "d.json", body), "--host", host["name"]
    )
    assert f"domain {name} created on host {host['name']}" in out and "guest token" in out

    rows = as_json(server, "domains", "list", "--host", host["name"])
    assert [d["name"] for d in rows] == [name]
    assert host["name"] in ok(server, "domains", "list")  # hosts shown by name
    d = as_json(server, "domains", "get", name)
    assert d["memory"]["target_mib"] == 2048 and len(d["vnodes"]) == 2
    assert "BACKING MiB / PNODE" in ok(server, "domains", "get", d["id"])

    assert "target 2048 -> 3072 MiB" in ok(server, "domains", "set-target", name, "3072")
    after = as_json(server, "domains", "set-target", name, "2048", "--policy", "nearest")
    assert after["memory"]["target_mib"] == 2048
    too_big = run(server, "domains", "set-target", name, "999999")
    assert too_big.returncode == 1 and "error 4" in too_big.stderr

    ranked = as_json(server, "domains", "placements", name)
    assert any(p["host_id"] == host["id"] for p in ranked["hosts"])
    assert "FEASIBLE" in ok(server, "domains", "placements", name)

    assert "vnuma" in ok(server, "domains", "export", name, "--format", "xl")
    assert "<numa>" in ok(server, "domains", "export", name, "--format", "libvirt")
    assert "memory/target" in ok(server, "domains", "export", name, "--format", "xenstore")
    whole = ok(
        server,
        "domains",
        "export",
        name,
        "--format",
        "libvirt-domain",
        "--domain-type",
        "qemu",
        "--kernel",
        "/boot/vmlinuz",
        "--serial-log",
        "/tmp/console.log",
    )
    assert '<domain type="qemu">' in whole and "<kernel>/boot/vmlinuz</kernel>" in whole
    assert "/tmp/console.log" in whole
    assert as_json(server, "domains", "export", name)["format"] == "xl"

    assert f"domain {name} deleted" in ok(server, "domains", "delete", name)
    assert run(server, "domains", "get", name).returncode == 1


def test_squeeze_and_rebalance(server: Server, tmp_path: Path) -> None:
    host = _host(server, tmp_path, uniq("sq"))
    for i in range(2):
        body = small_domain(uniq(f"sq{i}"), host["id"])
        body["memory"] = {"dynamic_min_mib": 1024, "dynamic_max_mib": 4096, "target_mib": 4096}
        as_json(server, "domains", "create", "-f", write(tmp_path, f"d{i}.json", body))
    dry = as_json(server, "squeeze", host["name"], "--free", "28000", "--dry-run")
    assert len(dry["domains"]) == 2 and sum(dry["free_mib_after"]) >= 28000
    assert "(dry run)" in ok(server, "squeeze", host["name"], "--free", "28000", "--dry-run")
    acc = as_json(server, "hosts", "accounting", host["name"])
    assert sum(p["allocated_mib"] for p in acc["pnodes"]) == 8192  # the dry run changed nothing
    done = as_json(server, "squeeze", host["name"], "--free", "8000", "--pnode", "0")
    assert done["free_mib_after"][0] >= 8000
    refused = run(server, "squeeze", host["name"], "--free", "10000000")
    assert refused.returncode == 1 and "max feasible" in refused.stderr
    # Issue 27 item 8: --keep-free leaves N free (--free is its deprecated name), --free-more
    # frees N more than is free now.
    free_now = sum(
        p["free_mib"] for p in as_json(server, "hosts", "accounting", host["name"])["pnodes"]
    )
    kept = as_json(server, "squeeze", host["name"], "--keep-free", str(free_now + 512), "--dry-run")
    more = as_json(server, "squeeze", host["name"], "--free-more", "512", "--dry-run")
    assert sum(kept["free_mib_after"]) == sum(more["free_mib_after"]) == free_now + 512
    both = run(server, "squeeze", host["name"], "--keep-free", "1", "--free-more", "1")
    assert both.returncode == 2

    reb = as_json(server, "rebalance", host["name"], "--budget-mib", "2048", "--dry-run")
    assert reb["dry_run"] is True and reb["moved_mib"] <= 2048
    assert "distortion" in ok(server, "rebalance", host["name"], "--budget-mib", "2048")


def _migration_world(server: Server, nb: Client) -> tuple[Sim, dict[str, Any], str, str]:
    a = nb.create_host(two_socket(uniq("ma")))
    b = nb.create_host(two_socket(uniq("mb")))
    d = nb.create_domain(small_domain(uniq("mvm"), a.id))
    assert d.guest_token is not None
    sim = Sim(nb, agents={a.id: a.agent_token, b.id: b.agent_token}, guests=[d.guest_token])
    return sim, {"id": d.id, "name": d.name}, a.name, b.name


def test_migrations_every_command(server: Server, nb: Client) -> None:
    _, dom, _, dst = _migration_world(server, nb)
    plan = as_json(server, "migrations", "plan", dom["name"], "--to", dst, "--strategy", "replug")
    assert plan["feasible"] is True and plan["steps"]
    assert "distortion" in ok(server, "migrations", "plan", dom["name"], "--to", dst)

    mig = as_json(server, "migrations", "start", dom["name"], "--to", dst, "--strategy", "replug")
    assert mig["state"] == "planned"
    advanced = ok(server, "migrations", "advance", mig["id"])
    assert f"migration {mig['id']} of {dom['name']}" in advanced and "preparing" in advanced
    pending = run(server, "migrations", "advance", mig["id"])  # nobody acked the steps yet
    assert pending.returncode == 1 and "not yet acknowledged" in pending.stderr
    assert "PHASE" in ok(server, "migrations", "get", mig["id"])
    assert as_json(server, "migrations", "get", mig["id"])["state"] == "preparing"
    listed = as_json(server, "migrations", "list", "--domain", dom["name"])
    assert [x["id"] for x in listed] == [mig["id"]]
    assert mig["id"] in ok(server, "migrations", "list", "--state", "preparing")
    assert as_json(server, "migrations", "abort", mig["id"])["state"] == "aborted"
    again = run(server, "migrations", "abort", mig["id"])
    assert again.returncode == 1 and "409" in again.stderr


def test_migrate_wait_completes_while_agents_ack(server: Server, nb: Client) -> None:
    sim, dom, _, dst = _migration_world(server, nb)
    with sim:
        r = run(
            server,
            "migrate",
            dom["name"],
            "--to",
            dst,
            "--strategy",
            "replug",
            "--wait",
            "--timeout",
            "90",
        )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "completed" in r.stdout
    assert "prepare" in r.stderr and "settle" in r.stderr  # a progress bar per phase
    assert (
        nb.get_domain(dom["id"]).host_id
        == nb.get_host(next(h.id for h in nb.iter_hosts() if h.name == dst)).id
    )


def test_migrate_wait_exits_4_when_a_step_fails(server: Server, nb: Client) -> None:
    sim, dom, _, dst = _migration_world(server, nb)
    sim.fail_op = "migrate"
    with sim:
        r = run(
            server, "-o", "json", "migrate", dom["name"], "--to", dst, "--wait", "--timeout", "90"
        )
    assert r.returncode == 4, r.stdout + r.stderr
    assert "failed" in r.stderr
    # The failed migrate step failed the migration at once; the domain is back on its source.
    mig = next(nb.iter_migrations(domain_id=dom["id"]))
    assert mig.state == "failed"


def test_migrate_without_wait_and_unknown_names(server: Server, nb: Client) -> None:
    _, dom, _, dst = _migration_world(server, nb)
    unknown = run(server, "migrate", dom["name"], "--to", "no-such-host")
    assert unknown.returncode == 1 and "no host named" in unknown.stderr
    started = as_json(server, "migrate", dom["name"], "--to", dst)
    assert started["state"] == "planned"
    busy = run(server, "migrate", dom["name"], "--to", dst)  # one migration at a time: 409
    assert busy.returncode == 1 and "409" in busy.stderr
    nb.abort_migration(started["id"])


def test_cluster_events_and_top(server: Server, tmp_path: Path) -> None:
    host = _host(server, tmp_path, uniq("ct"))
    c = as_json(server, "cluster", "show")
    assert c["hosts"] >= 1 and c["capacity_mib"] >= 30720
    assert "capacity MiB" in ok(server, "cluster", "show")
    tpl = as_json(server, "cluster", "template", "--derive")
    assert len(tpl["vnodes"]) >= 2
    assert "worst-case template" in ok(server, "cluster", "template")

    events = as_json(server, "events", "list", "--subject", host["id"])
    assert [e["action"] for e in events] == ["host.created"]
    assert as_json(server, "events", "list", "--subject", host["name"]) == events  # by name
    unknown = run(server, "events", "list", "--subject", "nope")
    assert unknown.returncode == 1 and "no host, domain or migration named" in unknown.stderr
    assert "host.created" in ok(server, "events", "list", "--limit", "5")
    for i in range(2):  # at least three events in the log, whatever ran before
        _host(server, tmp_path, uniq(f"ct{i}"))
    lines = ok(server, "-o", "json", "events", "watch", "--since", "0", "--count", "3").splitlines()
    assert [json.loads(x)["seq"] for x in lines] == sorted(json.loads(x)["seq"] for x in lines)
    assert len(lines) == 3
    watched = ok(server, "events", "watch", "--since", "0", "--subject", host["id"], "--count", "1")
    assert "host.created" in watched

    frame = ok(server, "top", "--once")
    assert f"{host['name']}  [active]" in frame and "FREE MiB" in frame
    live = ok(server, "top", "--count", "2", "--interval", "0.2")  # Rich Live, refreshed
    assert host["name"] in live
    snap = json.loads(ok(server, "-o", "json", "top", "--once"))
    assert any(h["name"] == host["name"] and len(h["pnodes"]) == 2 for h in snap)
    frames = ok(server, "-o", "json", "top", "--count", "2", "--interval", "0.2").splitlines()
    assert len(frames) == 2


def test_exit_codes_for_usage_refusal_and_unavailable(server: Server, tmp_path: Path) -> None:
    assert run(server, "hosts", "get").returncode == 2  # missing argument
    assert run(server, "hosts", "set-state", "x", "sideways").returncode == 2
    assert run(server, "--output", "xml", "hosts", "list").returncode == 2
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    r = run(server, "hosts", "create", "-f", str(bad))
    assert r.returncode == 2 and "one object" in r.stderr

    invalid = two_socket(uniq("inv"))
    invalid["distances"] = [[10, 21], [21, 11]]
    r = run(server, "hosts", "create", "-f", write(tmp_path, "inv.json", invalid))
    assert r.returncode == 1
    assert "422" in r.stderr and "body.distances.1.1: local distance must be 10" in r.stderr

    r = run(server, "hosts", "list", env={"NUMA_BALLOON_TOKEN": "wrong-token-0123456789"})
    assert r.returncode == 1 and "401" in r.stderr

    # The process boundary itself: the installed script's exit status, as scripts see it.
    assert run_process(server, "hosts", "get").returncode == 2
    down = run_process(
        None, "--url", f"http://127.0.0.1:{free_port()}", "--token", "t", "hosts", "list"
    )
    assert down.returncode == 3 and "unavailable" in down.stderr


def test_profile_env_and_flags_precedence(server: Server, tmp_path: Path) -> None:
    cfg = tmp_path / "xdg" / "numa-balloon"
    cfg.mkdir(parents=True)
    (tmp_path / "lab.token").write_text(ADMIN_TOKEN + "\n")
    cfg.joinpath("config.toml").write_text(
        f'[default]\nurl = "{server.url}"\ntoken = "wrong-default-token-0123"\n\n'
        f'[lab]\nurl = "{server.url}"\ntoken_file = "{tmp_path / "lab.token"}"\n'
    )
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert run(None, "hosts", "list", env=env).returncode == 1  # the default profile's token
    assert run(None, "--profile", "lab", "hosts", "list", env=env).returncode == 0
    assert run(None, "hosts", "list", env={**env, "NUMA_BALLOON_PROFILE": "lab"}).returncode == 0
    with_env = {**env, "NUMA_BALLOON_TOKEN": ADMIN_TOKEN}
    assert run(None, "hosts", "list", env=with_env).returncode == 0  # env beats the profile
    flag = run(None, "--token", "wrong-flag-token-012345", "hosts", "list", env=with_env)
    assert flag.returncode == 1  # the flag beats the environment
    missing = run(None, "--profile", "nope", "hosts", "list", env=env)
    assert missing.returncode == 2 and "no [nope] profile" in missing.stderr


def test_shell_completion_is_offered() -> None:
    """`numa-balloon --show-completion bash` prints the script the README tells people to source."""
    r = run_process(None, "--show-completion", "bash")
    assert r.returncode == 0, r.stderr
    assert "complete" in r.stdout and "numa-balloon" in r.stdout
    words = {
        "_NUMA_BALLOON_COMPLETE": "complete_bash",
        "COMP_CWORD": "4",
        "COMP_WORDS": "numa-balloon hosts set-state compute-07 ",
    }
    assert run_process(None, env=words).stdout.split() == ["active", "maintenance", "offline"]


def test_cluster_failover_plan(server: Server, nb: Client) -> None:
    hosts = [nb.create_host(two_socket(uniq("fo"))) for _ in range(2)]
    body = small_domain(uniq("ha"), hosts[0].id)
    body["labels"] = {"ha": "true"}
    dom = nb.create_domain(body)
    plan = as_json(server, "cluster", "failover-plan", "-r", "1", "--selector", "ha=true")
    assert plan["tolerated"] is True and plan["protected_domains"] == 1
    assert [r["domain_id"] for r in plan["restarts"]] == [dom.id]
    human = ok(server, "cluster", "failover-plan", "-r", "1", "-l", "ha=true")
    assert "tolerated: yes" in human and "if one host fails" in human
    assert hosts[0].name in human
    assert "failover: off" in ok(server, "cluster", "show")
    said = ok(server, "cluster", "protect", "-r", "1", "--selector", "ha=true")
    assert "failover: r=1 ha=true: holds (1 protected)" in said
    assert "failover: r=1 ha=true: holds (1 protected)" in ok(server, "cluster", "show")
    rec = as_json(server, "hosts", "fail", hosts[0].name, "--reason", "fan")
    # restarted elsewhere: on hosts[1] or another active host of this module's shared server
    assert [x["domain_id"] for x in rec["restarts"]] == [dom.id]
    assert rec["restarts"][0]["host_id"] != hosts[0].id and rec["stranded"] == []
    assert "failover: off" in ok(server, "cluster", "protect", "--off")
    # a bad selector is a refusal: one line, exit 1
    r = run(server, "cluster", "failover-plan", "--selector", "nope")
    assert r.returncode == 1 and "label_selector" in r.stderr
