"""Wrong or missing data in the CLI's output (issue #22, item 9): free memory, names where ids
were, text that is not markup, readable cluster and event lines, help metavars, `events watch`
from now, and a `migrate --wait` that says who it waits for. In-process CLI, real service."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer

from numa_balloon_cli.main import app
from numa_balloon_client import Client
from numa_balloon_client import models as m
from numa_balloon_testing.server import Server
from tests.client.conftest import small_domain, two_socket
from tests.client.incli import InCli, meanwhile, uniq


@pytest.fixture
def cli(server: Server) -> InCli:
    return InCli.against(server)


def _row(output: str, first: str) -> list[str]:
    """The cells of the table row that starts with `first`."""
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{output}")


def test_hosts_list_shows_free_memory(cli: InCli, nb: Client) -> None:
    host = nb.create_host(two_socket(uniq("free")))
    nb.create_domain(small_domain(uniq("fvm"), host.id))  # 2048 MiB, 1024 on each pnode
    out = cli.ok("hosts", "list", "--name", host.name)
    header = _row(out, "NAME")
    row = dict(zip(header, _row(out, host.name), strict=True))
    assert row["CAPACITY MiB"] == "30720" and row["FREE MiB"] == "28672"


def test_names_where_ids_were(cli: InCli, nb: Client, tmp_path: Any) -> None:
    src, dst = nb.create_host(two_socket(uniq("src"))), nb.create_host(two_socket(uniq("dst")))
    name = uniq("named")
    path = tmp_path / "d.json"
    path.write_text(json.dumps(small_domain(name)))
    created = cli.ok("domains", "create", "-f", str(path), "--host", src.name)
    assert f"domain {name} created on host {src.name}: " in created
    dom = nb.get_domain(next(d.id for d in nb.iter_domains(name=name)))
    assert re.search(rf"^host: {src.name}$", cli.ok("domains", "get", name), re.M)

    from numa_balloon_client import pending_steps  # new with this fix

    mig = nb.start_migration(dom.id, dst.id)
    listed = _row(cli.ok("migrations", "list", "--domain", name), mig.id)
    assert listed[1] == name and listed[4:6] == [src.name, dst.name]
    got = cli.ok("migrations", "get", mig.id)
    assert f"domain: {name}" in got and f"from: {src.name}" in got and f"to: {dst.name}" in got

    while not pending_steps(mig):  # up to a phase whose steps wait for an agent
        mig = nb.advance_migration(mig.id)
    pending = cli.run("migrations", "advance", mig.id)
    assert pending.exit_code == 1 and "not yet acknowledged" in pending.stderr
    assert f"by the agent on host {src.name}" in pending.stderr
    assert not re.search(r"host [0-9a-f]{8}-", pending.stderr)  # no host named by its UUID
    nb.abort_migration(mig.id, runs_on="source")

    body = small_domain(uniq("sq"), src.id)
    body["memory"] = {"dynamic_min_mib": 1024, "dynamic_max_mib": 4096, "target_mib": 4096}
    squeezed = nb.create_domain(body)
    out = cli.ok("squeeze", src.name, "--free", "26000", "--dry-run")
    assert squeezed.name in out and squeezed.id not in out


def test_brackets_in_problems_are_printed(cli: InCli, nb: Client) -> None:
    host = nb.create_host(two_socket(uniq("br")))
    dom = nb.create_domain(small_domain(uniq("[lab]-vm"), host.id))
    r = cli.run("domains", "set-target", dom.name, "99999")
    assert r.exit_code == 1
    assert "target_mib: outside [dynamic_min, dynamic_max]" in r.stderr
    assert "dynamic range [1024, 4096]" in r.stderr
    assert f"domain {dom.name}: target 2048 -> 3072" in cli.ok(
        "domains", "set-target", dom.name, "3072"
    )


def test_cluster_show_reads_as_text(cli: InCli, nb: Client) -> None:
    nb.create_host(two_socket(uniq("cs")))
    hosts = next(
        line for line in cli.ok("cluster", "show").splitlines() if line.startswith("hosts")
    )
    total = nb.get_cluster()
    active = total.hosts_by_state["active"]
    assert hosts.startswith(f"hosts: {total.hosts} (") and f"{active} active" in hosts
    assert "{" not in hosts and "'" not in hosts


def test_event_lines_name_their_subject(cli: InCli, nb: Client) -> None:
    nb.create_host(two_socket(uniq("ev")))  # the template needs a host
    head = max((e.seq for e in nb.iter_events()), default=0)
    nb.derive_template()  # an event about the cluster: no subject id
    host = nb.create_host(two_socket(uniq("evh")))
    out = cli.ok("events", "watch", "--since", str(head), "--count", "2")
    first, second = out.splitlines()
    assert re.search(r"cluster\.template_derived +cluster$", first) and "None" not in first
    assert re.search(rf"host\.created +host {host.name}$", second)


def test_events_watch_starts_from_now(cli: InCli, nb: Client) -> None:
    old = nb.create_host(two_socket(uniq("old")))
    made: list[str] = []
    with meanwhile(lambda i: made.append(nb.create_host(two_socket(uniq(f"new{i}"))).id)):
        r = cli.run("-o", "json", "events", "watch", "--count", "1")
    assert r.exit_code == 0, r.stderr
    event = json.loads(r.stdout)
    assert event["action"] == "host.created" and event["subject_id"] in made
    assert event["subject_id"] != old.id


def _tree(command: Any) -> Iterator[Any]:
    yield command
    for sub in getattr(command, "commands", {}).values():
        yield from _tree(sub)


def test_help_shows_no_python_types(cli: InCli) -> None:
    """Every option of every command names its value (`KEY=VALUE`, `MIB`), not a Python type."""
    root = typer.main.get_command(app)
    python = re.compile(r"<(str|int|float|bool|list\[[^>]*\])>")
    for command in _tree(root):
        for param in command.params:
            if param.param_type_name != "option" or param.hidden:
                continue
            ctx = typer.Context(command)
            record = param.get_help_record(ctx)
            assert record is not None and not python.search(record[0]), (command.name, record)
    assert "<list[str]>" not in cli.ok("hosts", "list", "--help")


def test_migrate_wait_says_who_it_waits_for(cli: InCli, nb: Client) -> None:
    src, dst = nb.create_host(two_socket(uniq("ws"))), nb.create_host(two_socket(uniq("wd")))
    dom = nb.create_domain(small_domain(uniq("wvm"), src.id))
    r = cli.run("migrate", dom.name, "--to", dst.name, "--wait", "--timeout", "1")
    assert r.exit_code == 4, r.stdout + r.stderr
    assert "timed out after 1 s" in r.stderr and "failed" not in r.stderr
    mig = next(nb.iter_migrations(domain_id=dom.id))
    assert f"migration {mig.id} of {dom.name} ({src.name} -> {dst.name}) is still" in r.stderr
    assert f"waiting on the agent of host {src.name}: migrate" in r.stderr
    nb.abort_migration(mig.id, runs_on="source")


def test_a_stalled_wait_names_the_pending_steps_once() -> None:
    from numa_balloon_cli.migrations import Stall

    now = [0.0]
    said: list[str] = []
    stall = Stall(
        lambda mig: [f"the agent of host b: migrate ({mig.state})"], said.append, 10, lambda: now[0]
    )
    mig = _migration("preparing", ["acked", "pending"])
    for t in (0.0, 5.0, 9.9):
        now[0] = t
        stall.update(mig)
    assert said == []  # not stalled yet
    now[0] = 10.0
    stall.update(mig)
    assert said == [
        "no progress for 10 s; preparing, waiting on: the agent of host b: migrate (preparing)"
    ]
    now[0] = 30.0
    stall.update(mig)
    assert len(said) == 1  # said once
    moved = _migration("preparing", ["acked", "acked"])
    stall.update(moved)  # progress: the clock starts again
    now[0] = 35.0
    stall.update(moved)
    assert len(said) == 1


def _migration(state: str, steps: list[str]) -> m.MigrationOut:
    return m.MigrationOut.model_validate(
        {
            "auto_advance": False,
            "claims": [],
            "created_at": "2026-01-01T00:00:00Z",
            "destination_host_id": "b",
            "domain_id": "d",
            "expires_at": None,
            "id": "x",
            "plan": None,
            "progress_at": "2026-01-01T00:00:00Z",
            "reason": None,
            "source_host_id": "a",
            "state": state,
            "steps": [
                {
                    "actor": "agent",
                    "detail": None,
                    "host_id": "a",
                    "id": f"s{i}",
                    "mib": 1,
                    "op": "migrate",
                    "phase": "prepare",
                    "pnode": 0,
                    "seq": i,
                    "state": s,
                    "target_mib": None,
                    "vnode": None,
                }
                for i, s in enumerate(steps)
            ],
            "strategy": "rebalance",
            "stuck": False,
            "stuck_reason": None,
            "updated_at": "2026-01-01T00:00:00Z",
            "version": 1,
        }
    )
