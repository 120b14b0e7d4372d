"""The sysfs reader on kernel-shaped trees: what `register --from-sysfs` and the agent send."""

from __future__ import annotations

from pathlib import Path

import pytest

from numa_balloon_client.sysfs import SysfsError, host_from_sysfs, parse_cpulist
from tests.client.sysfs_trees import four_node, make_tree, memory_only, two_socket


def test_two_socket_machine(tmp_path: Path) -> None:
    body = host_from_sysfs(two_socket(tmp_path / "node"), name="compute-07", reserved_mib=4096)
    assert body == {
        "name": "compute-07",
        "pnodes": [
            {"memory_mib": 263_999_708 // 1024, "reserved_mib": 4096, "cpus": 32},
            {"memory_mib": 264_210_432 // 1024, "reserved_mib": 4096, "cpus": 32},
        ],
        "distances": [[10, 21], [21, 10]],
    }


def test_four_node_machine_keeps_the_slit_and_per_node_reserve(tmp_path: Path) -> None:
    body = host_from_sysfs(four_node(tmp_path), name="epyc", reserved_mib=[2048, 0, 0, 0])
    assert [p["memory_mib"] for p in body["pnodes"]] == [65_536] * 4
    assert [p["reserved_mib"] for p in body["pnodes"]] == [2048, 0, 0, 0]
    assert [p["cpus"] for p in body["pnodes"]] == [8] * 4
    assert body["distances"][0] == [10, 12, 12, 12]
    assert body["distances"][3] == [12, 12, 12, 10]


def test_memory_only_node_has_no_cpus(tmp_path: Path) -> None:
    body = host_from_sysfs(memory_only(tmp_path), name="cxl")
    assert body["pnodes"] == [
        {"memory_mib": 131_072, "reserved_mib": 0, "cpus": 16},
        {"memory_mib": 65_536, "reserved_mib": 0, "cpus": 0},  # 512 kB rounds down
    ]
    assert body["distances"] == [[10, 20], [20, 10]]


def test_sparse_node_numbers_map_to_consecutive_pnodes(tmp_path: Path) -> None:
    """Nodes 0 and 2 online (1 offlined): the kernel's rows have two entries, in node order."""
    make_tree(
        tmp_path,
        {0: (4 * 1024 * 1024, [0, 1]), 2: (2 * 1024 * 1024, [2, 3, 4])},
        [[10, 21], [21, 10]],
    )
    body = host_from_sysfs(tmp_path, name="sparse")
    assert [(p["memory_mib"], p["cpus"]) for p in body["pnodes"]] == [(4096, 2), (2048, 3)]


def test_node10_sorts_after_node9(tmp_path: Path) -> None:
    nodes = {n: ((n + 1) * 1024 * 1024, [n]) for n in range(11)}
    slit = [[10 if i == j else 20 for j in range(11)] for i in range(11)]
    body = host_from_sysfs(make_tree(tmp_path, nodes, slit), name="eleven")
    assert [p["memory_mib"] for p in body["pnodes"]] == [(n + 1) * 1024 for n in range(11)]


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0-3,8,10-11\n", [0, 1, 2, 3, 8, 10, 11]), ("\n", []), ("7", [7]), ("", [])],
)
def test_parse_cpulist(text: str, cpus: list[int]) -> None:
    assert parse_cpulist(text) == cpus


@pytest.mark.parametrize("text", ["3-1", "a-b", "1,,x"])
def test_parse_cpulist_refuses_garbage(text: str) -> None:
    with pytest.raises(SysfsError):
        parse_cpulist(text)


def test_a_row_of_the_wrong_length_is_refused(tmp_path: Path) -> None:
    make_tree(tmp_path, {0: (1024 * 1024, [0]), 1: (1024 * 1024, [1])}, [[10, 21], [21]])
    with pytest.raises(SysfsError, match="node1/distance has 1 entries for 2 nodes"):
        host_from_sysfs(tmp_path, name="bad")


def test_missing_tree_and_missing_meminfo_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SysfsError, match="is not a directory"):
        host_from_sysfs(tmp_path / "absent", name="x")
    with pytest.raises(SysfsError, match="no nodeN directories"):
        host_from_sysfs(tmp_path, name="x")
    two_socket(tmp_path / "t")
    (tmp_path / "t" / "node1" / "meminfo").unlink()
    with pytest.raises(SysfsError, match="cannot read"):
        host_from_sysfs(tmp_path / "t", name="x")


def test_reserved_list_must_match_the_node_count(tmp_path: Path) -> None:
    with pytest.raises(SysfsError, match="2 values for 4 nodes"):
        host_from_sysfs(four_node(tmp_path), name="x", reserved_mib=[0, 0])


def test_this_machine_if_it_publishes_numa_nodes() -> None:
    """The real /sys of the test machine, when it has one: every node has memory and a row."""
    root = Path("/sys/devices/system/node")
    if not (root / "node0" / "meminfo").exists():
        pytest.skip("this machine publishes no NUMA nodes in sysfs")
    body = host_from_sysfs(root, name="here")
    n = len(body["pnodes"])
    assert all(len(row) == n and row[i] == 10 for i, row in enumerate(body["distances"]))
    assert all(p["memory_mib"] > 0 for p in body["pnodes"])
