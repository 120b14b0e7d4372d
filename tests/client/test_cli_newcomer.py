"""What a kubectl or openstack user types on the first day (issue #22, item 8): output flags
anywhere, `-o wide`, `--version`, `describe`, `--watch` on lists, `--dry-run` on create and
migrate, migrations and keys by name or id prefix, completion of names. In-process CLI, real
service."""

from __future__ import annotations

import json
from importlib.metadata import version
from typing import Any

import pytest
import yaml

from numa_balloon_client import Client
from numa_balloon_testing.server import Server
from tests.client.conftest import small_domain, two_socket
from tests.client.incli import InCli, meanwhile, uniq


@pytest.fixture
def cli(server: Server) -> InCli:
    return InCli.against(server)


def _host(nb: Client, name: str | None = None) -> Any:
    return nb.create_host(two_socket(name or uniq("h")))


def test_output_flags_go_anywhere_and_the_last_one_wins(cli: InCli, nb: Client) -> None:
    host = _host(nb)
    rows = json.loads(cli.ok("hosts", "list", "--name", host.name, "-o", "json"))
    assert [h["name"] for h in rows] == [host.name]
    assert json.loads(cli.ok("hosts", "get", host.name, "--output=json"))["id"] == host.id
    assert yaml.safe_load(cli.ok("hosts", "get", "-o", "yaml", host.name))["name"] == host.name
    assert json.loads(cli.ok("-o", "yaml", "hosts", "get", host.name, "-ojson"))["id"] == host.id
    assert json.loads(cli.ok("hosts", "-o", "json", "get", host.name))["id"] == host.id  # a group
    # The other global flags too: a wrong token after the subcommand beats the right one.
    refused = cli.run("hosts", "list", "--token", "wrong-token-0123456789abcdef")
    assert refused.exit_code == 1 and "401" in refused.stderr
    bad = cli.run("hosts", "list", "-o", "xml")
    assert bad.exit_code == 2 and "xml" in bad.stderr


def test_wide_output_adds_columns(cli: InCli, nb: Client) -> None:
    body = two_socket(uniq("wide"))
    body["labels"] = {"rack": "r12"}
    host = nb.create_host(body)
    nb.create_domain(small_domain(uniq("wvm"), host.id))
    narrow = cli.ok("hosts", "list", "--name", host.name)
    wide = cli.ok("hosts", "list", "--name", host.name, "-o", "wide")
    assert "ALLOCATED MiB" not in narrow and "rack=r12" not in narrow
    assert "ALLOCATED MiB" in wide and "CLAIMED MiB" in wide and "rack=r12" in wide
    assert "2048" in wide.splitlines()[-1]  # allocated by the domain
    assert "POLICY" in cli.ok("domains", "list", "--host", host.name, "-o", "wide")
    assert "proportional" in cli.ok("domains", "list", "--host", host.name, "-o", "wide")


def test_version() -> None:
    r = InCli({}).run("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"numa-balloon {version('numa-balloon')}"


def test_describe_host_domain_and_migration(cli: InCli, nb: Client) -> None:
    src, dst = _host(nb), _host(nb)
    dom = nb.create_domain(small_domain(uniq("dvm"), src.id))
    mig = nb.start_migration(dom.id, dst.id)

    host = cli.ok("hosts", "describe", src.name)
    assert f"name: {src.name}" in host and "OBSERVED FREE MiB" in host  # pnodes with accounting
    assert "distances (SLIT)" in host and "domains (1)" in host and dom.name in host
    assert "migrations in flight" in host and mig.id in host
    assert "host.created" in host  # its recent events
    doc = json.loads(cli.ok("hosts", "describe", src.id, "-o", "json"))
    assert doc["host"]["id"] == src.id and [d["name"] for d in doc["domains"]] == [dom.name]
    assert [x["id"] for x in doc["migrations_in_flight"]] == [mig.id]
    assert [e["action"] for e in doc["events"]] == ["host.created"]
    assert len(doc["accounting"]["pnodes"]) == 2

    domain = cli.ok("domains", "describe", dom.name)
    assert f"host: {src.name}" in domain and "vnodes" in domain and "ACTUAL MiB" in domain
    assert mig.id in domain and "domain.created" in domain

    described = cli.ok("migrations", "describe", dom.name)
    assert f"id: {mig.id}" in described and f"domain: {dom.name}" in described
    assert f"from: {src.name}" in described and f"to: {dst.name}" in described
    assert "claims" in described and "steps" in described and "migration.created" in described
    doc = json.loads(cli.ok("migrations", "describe", mig.id, "-o", "json"))
    assert doc["migration"]["id"] == mig.id
    assert [e["action"] for e in doc["events"]] == ["migration.created"]
    nb.abort_migration(mig.id)


def test_lists_watch_for_changes(cli: InCli, nb: Client) -> None:
    host = _host(nb)
    states = ("maintenance", "active")
    with meanwhile(lambda i: nb.set_host_state(host.id, states[i % 2])):
        r = cli.run("hosts", "list", "--name", host.name, "--watch", "--count", "1")
    assert r.exit_code == 0, r.stderr
    header, first, changed = r.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "ID", "STATE"] and first.split()[0] == host.name
    assert changed.split()[:2] == [host.name, host.id] and first != changed

    nb.set_host_state(host.id, "active")  # whatever the last toggle left
    dom = nb.create_domain(small_domain(uniq("wd"), host.id))
    targets = (1024, 3072)
    with meanwhile(lambda i: nb.set_target(dom.id, {"target_mib": targets[i % 2]})):
        r = cli.run("domains", "list", "--name", dom.name, "-w", "--count", "2", "-o", "json")
    assert r.exit_code == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["type"] for x in lines] == ["ADDED", "MODIFIED", "MODIFIED"]
    assert {x["object"]["name"] for x in lines} == {dom.name}
    versions = [x["object"]["version"] for x in lines]
    assert versions == sorted(set(versions))  # each line a newer state of the domain

    other = _host(nb)
    migs: list[Any] = []

    def churn(i: int) -> None:  # start a migration, abort it, start another...
        if i % 2 == 0:
            migs.append(nb.start_migration(dom.id, other.id))
        else:
            nb.abort_migration(migs[-1].id)

    with meanwhile(churn):
        r = cli.run("migrations", "list", "--domain", dom.name, "-w", "--count", "1")
    assert r.exit_code == 0, r.stderr
    changed = r.stdout.splitlines()[-1].split()
    assert changed[0] in {x.id for x in migs} and changed[1] == dom.name
    assert changed[4:6] == [host.name, other.name]  # FROM and TO by name
    for x in migs:
        if nb.get_migration(x.id).state == "planned":
            nb.abort_migration(x.id)


def test_dry_run_of_create_and_migrate_changes_nothing(
    cli: InCli, nb: Client, tmp_path: Any
) -> None:
    src, dst = _host(nb), _host(nb)
    name = uniq("dry")
    path = tmp_path / "d.json"
    path.write_text(json.dumps(small_domain(name)))
    out = cli.ok("domains", "create", "-f", str(path), "--host", src.name, "--dry-run")
    assert f"domain {name} would be created on host {src.name} (dry run)" in out
    preview = cli.json("domains", "create", "-f", str(path), "--dry-run")
    assert preview["hosts"] and all("feasible" in p for p in preview["hosts"])
    assert not [d for d in nb.iter_domains(name=name) if d.name == name]

    too_big = small_domain(name)
    too_big["memory"] = {"dynamic_min_mib": 65536, "dynamic_max_mib": 65536, "target_mib": 65536}
    too_big["vnodes"] = [{"size_mib": 65536, "vcpus": [0], "distances": [10]}]
    path.write_text(json.dumps(too_big))
    nowhere = cli.run("domains", "create", "-f", str(path), "--host", src.name, "--dry-run")
    assert nowhere.exit_code == 1 and f"no host can take domain {name}" in nowhere.stderr

    dom = nb.create_domain(small_domain(uniq("dmv"), src.id))
    for command in (["migrate"], ["migrations", "start"]):
        planned = cli.ok(*command, dom.name, "--to", dst.name, "--dry-run")
        assert "steps" in planned and "dry run: nothing claimed or started" in planned
        assert f"to: {dst.name}" in planned
    plan = cli.json("migrate", dom.name, "--to", dst.name, "--dry-run")
    assert plan["feasible"] is True and plan["destination_host_id"] == dst.id
    assert list(nb.iter_migrations(domain_id=dom.id)) == []
    assert nb.host_accounting(dst.id).pnodes[0].claimed_mib == 0


def test_migrations_by_domain_name_or_id_prefix(cli: InCli, nb: Client) -> None:
    src, dst = _host(nb), _host(nb)
    dom = nb.create_domain(small_domain(uniq("pvm"), src.id))
    first = nb.start_migration(dom.id, dst.id)
    nb.abort_migration(first.id)
    second = nb.start_migration(dom.id, dst.id)
    # By the domain: the migration in flight (not the older, aborted one).
    assert cli.json("migrations", "get", dom.name)["id"] == second.id
    assert cli.json("migrations", "get", first.id[:8])["id"] == first.id
    assert cli.json("migrations", "get", first.id[:13])["id"] == first.id  # with its hyphen
    unknown = cli.run("migrations", "get", "zzzz-no-such")
    assert unknown.exit_code == 1 and "no migration named or with id" in unknown.stderr
    aborted = cli.ok("migrations", "abort", dom.name)
    assert f"migration {second.id} of {dom.name}" in aborted and "aborted" in aborted
    # Once nothing is in flight, the domain names its newest migration.
    assert cli.json("migrations", "get", dom.name)["id"] == second.id


def test_keys_by_name_or_id_prefix(cli: InCli) -> None:
    name = uniq("ci")
    created = cli.json("keys", "create", name, "--role", "viewer")
    assert cli.json("keys", "get", name)["id"] == created["id"]
    assert cli.json("keys", "get", created["id"][:6])["name"] == name
    rotated = cli.json("keys", "rotate", name)
    assert rotated["secret"].startswith("nbk_") and rotated["secret"] != created["secret"]
    assert f"key {name} revoked" in cli.ok("keys", "revoke", created["id"][:10])
    assert cli.json("keys", "get", name)["revoked_at"] is not None
    assert cli.run("keys", "get", uniq("nokey")).exit_code == 1


def test_ambiguous_prefixes_are_refused_with_the_candidates() -> None:
    from numa_balloon_cli.resolve import Unknown, _by_prefix

    ids = ["abcd1234-0000", "abcd5678-0000", "ffff0000-0000"]
    assert _by_prefix("key", "ffff", ids, str) == "ffff0000-0000"
    with pytest.raises(Unknown, match="2 keys have ids starting with 'ABCD'"):
        _by_prefix("key", "ABCD", ids, str)
    with pytest.raises(Unknown, match="no key named"):
        _by_prefix("key", "abc", ids, str)  # too short to be taken for an id


def _complete(cli: InCli, line: str) -> list[str]:
    words = line.split(" ")
    r = cli.run(
        env={
            "_NUMA_BALLOON_COMPLETE": "complete_bash",
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(words) - 1),
        }
    )
    assert r.exit_code == 0, r.stderr
    return r.stdout.split()


def test_completion_of_names(cli: InCli, nb: Client) -> None:
    prefix = uniq("cmp")
    a, b = _host(nb, f"{prefix}-a"), _host(nb, f"{prefix}-b")
    dom = nb.create_domain(small_domain(f"{prefix}-vm", a.id))
    assert _complete(cli, f"numa-balloon hosts get {prefix}") == [a.name, b.name]
    assert _complete(cli, f"numa-balloon domains describe {prefix}") == [dom.name]
    assert _complete(cli, f"numa-balloon migrate {dom.name} --to {prefix}-b") == [b.name]
    mig = nb.start_migration(dom.id, b.id)
    assert _complete(cli, f"numa-balloon migrations get {prefix}") == [dom.name]
    assert _complete(cli, f"numa-balloon migrations abort {mig.id[:8]}") == [mig.id]
    nb.abort_migration(mig.id)
    wrong = {"NUMA_BALLOON_TOKEN": "wrong-token-0123456789abcdef"}
    cli.env.update(wrong)
    assert _complete(cli, f"numa-balloon hosts get {prefix}") == []  # refused: nothing, quietly
