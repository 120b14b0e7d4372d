"""The Xen backend: saved `xl info -n` outputs of several shapes, and its actions through the
real argument syntax of `xl` and `xenstore-*`, run by recording scripts put first on PATH."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from numa_balloon_agent.backends.xen import XenBackend
from numa_balloon_agent.backends.xl_info import XlInfoError, parse_xl_info
from numa_balloon_agent.cli import make_backend, parse
from numa_balloon_agent.runner import Runner
from numa_balloon_agent.steps import Step

SAVED = Path(__file__).parent / "xl_info"
UUID = "0b7e5c1a-3f8d-4a52-b0e4-6c1d2e3f4a5b"

# One script under every tool name: logs its argv as a JSON line, serves xenstore from files.
FAKE = """#!{python}
import json, os, sys
from pathlib import Path
store = Path(os.environ["FAKE_XENSTORE"])
name = Path(sys.argv[0]).name
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps([name, *sys.argv[1:]]) + "\\n")
key = store / sys.argv[-1 if name != "xenstore-write" else -2].lstrip("/")
if name == "xenstore-read":
    if not key.is_file():
        sys.exit("couldn't read path")
    print(key.read_text())
elif name == "xenstore-list":
    if not key.is_dir():
        sys.exit("couldn't list path")
    print("\\n".join(sorted(p.name for p in key.iterdir())))
elif name == "xenstore-write":
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text(sys.argv[-1])
"""


@pytest.mark.parametrize(
    ("saved", "memory", "cpus", "row0"),
    [
        ("one_node.txt", [16263], [4], [10]),
        ("two_socket.txt", [65536, 65501], [8, 8], [10, 21]),
        ("eight_node.txt", [30720] + [32768] * 7, [4] * 7 + [0], [10, 16, 16, 22, 16, 22, 16, 22]),
    ],
)
def test_discover_from_saved_outputs(
    saved: str, memory: list[int], cpus: list[int], row0: list[int]
) -> None:
    body = XenBackend(xl_info=SAVED / saved).discover(name="xen-1", reserved_mib=512)
    assert [p["memory_mib"] for p in body["pnodes"]] == memory
    assert [p["cpus"] for p in body["pnodes"]] == cpus
    assert all(p["reserved_mib"] == 512 for p in body["pnodes"])
    assert body["distances"][0] == row0
    n = len(memory)
    assert all(
        body["distances"][i][j] == body["distances"][j][i] for i in range(n) for j in range(n)
    )


def test_free_memory_and_asymmetric_rows() -> None:
    backend = XenBackend(xl_info=SAVED / "eight_node.txt")
    assert backend.free_mib() == [25000 + i for i in range(8)]
    assert XenBackend(xl_info=SAVED / "two_socket.txt").free_mib() == [60672, 59328]


def test_gaps_in_node_numbers_and_bad_outputs() -> None:
    text = (
        (SAVED / "two_socket.txt")
        .read_text()
        .replace(
            "   1:     65501      59328      21,10\n", "   2:     65501      59328      21,99,10\n"
        )
        .replace(
            "   0:     65536      60672      10,21\n", "   0:     65536      60672      10,99,21\n"
        )
    )
    nodes = parse_xl_info(text)
    assert [n.node for n in nodes] == [0, 2]
    with pytest.raises(XlInfoError, match="numa_info"):
        parse_xl_info("host : x\n")


def fake_xen_tools(tmp_path: Path) -> tuple[Runner, Path, Path]:
    """`xl` and `xenstore-*` as the recording script in `tmp_path/bin`, first on the runner's
    PATH; xenstore holds dom0 only. Returns the runner, the store's root and the log."""
    bin_dir, store, log = tmp_path / "bin", tmp_path / "store", tmp_path / "log"
    bin_dir.mkdir()
    script = bin_dir / "fake"
    script.write_text(FAKE.format(python=sys.executable))
    script.chmod(0o755)
    for tool in ("xl", "xenstore-read", "xenstore-list", "xenstore-write"):
        (bin_dir / tool).symlink_to(script)
    (store / "local/domain/0").mkdir(parents=True)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    env.update(FAKE_XENSTORE=str(store), FAKE_LOG=str(log))
    return Runner(env), store, log


@pytest.fixture
def xen(tmp_path: Path) -> tuple[XenBackend, Path, Path]:
    runner, store, log = fake_xen_tools(tmp_path)
    dom = store / "local/domain/7"
    (dom / "memory/vnode0").mkdir(parents=True)
    (dom / "memory/vnode1").mkdir(parents=True)
    (dom / "vm").write_text(f"/vm/{UUID}")
    (dom / "memory/target").write_text(str(3072 * 1024))
    (dom / "memory/vnode0/target").write_text(str(2048 * 1024))
    (dom / "memory/vnode1/target").write_text(str(1024 * 1024))
    (dom / "memory/vnode0/actual").write_text(str(2040 * 1024))
    return XenBackend(xl_info=SAVED / "two_socket.txt", runner=runner), store, log


def recorded(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_domains_report_vnode_actuals(xen: tuple[XenBackend, Path, Path]) -> None:
    backend, _, log = xen
    assert backend.domains() == [{"domain_id": UUID, "vnodes": [{"index": 0, "actual_mib": 2040}]}]
    assert ["xenstore-read", "/local/domain/7/vm"] in recorded(log)


def test_pool_step_writes_the_vnode_target_then_mem_sets_the_total(
    xen: tuple[XenBackend, Path, Path],
) -> None:
    backend, store, log = xen
    step = Step(
        id="s1", domain_id=UUID, op="unplug", phase="balloon", vnode=1, pnode=1, mib=512,
        target_mib=512, grow=False,
    )  # fmt: skip
    outcome = backend.apply(step, dry_run=False)
    assert not outcome.ack and outcome.ok  # the reports complete pool steps
    calls = recorded(log)
    assert ["xenstore-write", "/local/domain/7/memory/vnode1/target", str(512 * 1024)] in calls
    assert calls[-1] == ["xl", "mem-set", "7", "2560m"]  # 2048 + 512
    assert (store / "local/domain/7/memory/vnode1/target").read_text() == str(512 * 1024)
    assert "xl mem-set 7 2560m" in outcome.detail


def test_dry_run_changes_nothing(xen: tuple[XenBackend, Path, Path]) -> None:
    backend, _store, log = xen
    step = Step("s1", UUID, "plug", "balloon", 0, 0, 512, 2048, True)
    outcome = backend.apply(step, dry_run=True)
    assert "xenstore-write" in outcome.detail
    assert not any(c[0] in ("xl", "xenstore-write") for c in recorded(log))


def test_migrate_and_release(xen: tuple[XenBackend, Path, Path]) -> None:
    backend, store, log = xen
    dest = {"host_id": "h", "host_name": "xen-2", "nodesets": [[0], [1]]}
    step = Step("m", UUID, "migrate", "migrate", None, None, 3072, 3072, None, [], dest)
    outcome = backend.apply(step, dry_run=False)
    assert outcome.ack and outcome.ok
    assert recorded(log)[-1] == ["xl", "migrate", "7", "xen-2"]
    release = Step("r", UUID, "release", "release", None, 0, 2048, None, None)
    assert not backend.apply(release, dry_run=False).ok  # still in xenstore: not released
    (store / "local/domain/7/vm").unlink()
    (store / "local/domain/7/memory/target").unlink()
    os.rename(store / "local/domain/7", store / "gone")
    assert backend.apply(release, dry_run=False).ok


# A restart's `start`: the domain's xl.cfg found by uuid, created with the new host's pnodes.
OTHER = "5d2f0a9e-7c41-4b8e-9f3a-1e2d3c4b5a69"
CONFIG = f"""# {OTHER}: not this one (a comment)
name = "web-1"; uuid = "{OTHER.upper()}"   # upper case is the same uuid
memory = 3072
maxmem = 3072
vcpus = 4
disk = [ 'phy:/dev/vg0/web-1,xvda,w' ]
vnuma = [ [ "pnode=0", "size=2048", "vcpus=0-1", "vdistances=10,21" ],
          [ "pnode=0", "size=1024", "vcpus=2-3", "vdistances=21,10" ], ]
"""
NEW_VNUMA = (
    'vnuma=[["pnode=1", "size=2048", "vcpus=0-1", "vdistances=10,21"], '
    '["pnode=0", "size=1024", "vcpus=2-3", "vdistances=21,10"]]'
)


def _start(domain_id: str, nodesets: list[list[int]] | None) -> Step:
    dest = None if nodesets is None else {"host_id": "h", "host_name": "x", "nodesets": nodesets}
    return Step("s", domain_id, "start", "restart", None, None, 3072, 3072, None, [], dest)


def test_start_creates_the_config_with_the_new_pnodes(
    xen: tuple[XenBackend, Path, Path], tmp_path: Path
) -> None:
    backend, _, log = xen
    backend.config_dir = tmp_path / "etc-xen"
    (backend.config_dir / "auto").mkdir(parents=True)
    (backend.config_dir / "xl.conf").write_text('autoballoon = "off"\n')
    (backend.config_dir / "other.cfg").write_text(f'name = "db"\nuuid = "{UUID}"\n')
    (backend.config_dir / "web-1.cfg").write_text(CONFIG)
    (backend.config_dir / "auto/web-1.cfg").symlink_to(backend.config_dir / "web-1.cfg")
    outcome = backend.apply(_start(OTHER, [[1], [0]]), dry_run=True)
    assert outcome.ok and "xl create" in outcome.detail and "pnode=1" in outcome.detail
    assert not any(c[0] == "xl" for c in recorded(log))  # dry run: printed, not run
    outcome = backend.apply(_start(OTHER, [[1], [0]]), dry_run=False)
    assert outcome.ack and outcome.ok, outcome.detail
    assert recorded(log)[-1] == ["xl", "create", str(backend.config_dir / "web-1.cfg"), NEW_VNUMA]
    # no pnodes in the step (an older service): the file as it is
    assert backend.apply(_start(OTHER, None), dry_run=False).ok
    assert recorded(log)[-1] == ["xl", "create", str(backend.config_dir / "web-1.cfg")]
    # the file's vnuma is not the domain's (three vnodes in the service): not started
    outcome = backend.apply(_start(OTHER, [[1], [0], [1]]), dry_run=False)
    assert not outcome.ok and "2 vnode spec(s) but the domain has 3" in outcome.detail


def test_start_of_a_running_domain_or_one_without_a_config(
    xen: tuple[XenBackend, Path, Path], tmp_path: Path
) -> None:
    backend, _, log = xen
    backend.config_dir = tmp_path / "etc-xen"
    backend.config_dir.mkdir()
    (backend.config_dir / "broken.cfg").write_text('name = "x\n')
    running = backend.apply(_start(UUID, [[0], [1]]), dry_run=False)
    assert running.ack and running.ok and "already runs here" in running.detail
    missing = backend.apply(_start(OTHER, [[0]]), dry_run=False)
    assert missing.ack and not missing.ok
    assert f"no xl.cfg with uuid {OTHER} in {backend.config_dir}" in missing.detail
    assert f"/v1/domains/{OTHER}/export?format=xl" in missing.detail
    assert "broken.cfg: line 1" in missing.detail  # the file it could not read is named
    assert not any(c[0] == "xl" for c in recorded(log))
    (backend.config_dir / "web-1.cfg").write_text(CONFIG)
    fail = FAKE.format(python=sys.executable) + "\nif name == 'xl': sys.exit('libxl: cannot')\n"
    xl = tmp_path / "bin/xl"  # the fixture's recording script, now one that fails
    xl.unlink()
    xl.write_text(fail)
    xl.chmod(0o755)
    failed = backend.apply(_start(OTHER, [[0], [1]]), dry_run=False)
    assert failed.ack and not failed.ok and "libxl: cannot" in failed.detail


def test_the_config_dir_from_the_command_line_or_the_config_file(tmp_path: Path) -> None:
    saved = ["discover", "--backend", "xen", "--xl-info", str(SAVED / "one_node.txt")]
    backend = make_backend(parse([*saved, "--xl-config-dir", str(tmp_path)]))
    assert isinstance(backend, XenBackend) and backend.config_dir == tmp_path
    default = make_backend(parse(saved))
    assert isinstance(default, XenBackend) and default.config_dir == Path("/etc/xen")
    toml = tmp_path / "agent.toml"
    toml.write_text('backend = "xen"\nxl_config_dir = "/srv/xen"\n')
    assert parse(["discover", "--config", str(toml)]).xl_config_dir == Path("/srv/xen")
