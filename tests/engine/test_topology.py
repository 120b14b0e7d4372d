from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.engine import (
    TopologyError,
    physical_from_lists,
    validate_slit,
    virtual_from_lists,
)
from service.engine.errors import InputError

GOOD = [[10, 20], [20, 10]]


def test_valid_slit_has_no_issues() -> None:
    assert validate_slit(GOOD) == ()
    assert validate_slit(np.array(GOOD)) == ()


def test_slit_reports_every_bad_entry_with_its_location() -> None:
    issues = validate_slit([[11, 255, True], [20, 10, 2.0], [20, 20]], 3)
    locs = {i.loc for i in issues}
    assert ("distances", 0, 0) in locs  # diagonal not 10
    assert ("distances", 0, 1) in locs  # 255 out of range
    assert ("distances", 0, 2) in locs  # bool rejected
    assert ("distances", 1, 2) in locs  # float rejected
    assert ("distances", 2) in locs  # short row


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
        lambda c: st.lists(c, max_size=4),
        max_leaves=20,
    )
)
def test_slit_validation_never_crashes_on_garbage(obj: object) -> None:
    issues = validate_slit(obj)
    assert isinstance(issues, tuple)


def test_huge_ints_are_issues_not_crashes() -> None:
    assert validate_slit([[10, 10**30], [20, 10]])


def test_physical_collects_all_issues() -> None:
    with pytest.raises(TopologyError) as ei:
        physical_from_lists(
            memory_mib=[0, 4096], reserved_mib=[0, 5000], cpus=[0, 4], distances=[[10, 9], [20, 10]]
        )
    locs = {i.loc for i in ei.value.issues}
    assert {
        ("pnodes", 0, "memory_mib"),
        ("pnodes", 1, "reserved_mib"),
        ("pnodes", 0, "cpus"),
        ("distances", 0, 1),
    } <= locs


def test_physical_capacity() -> None:
    t = physical_from_lists(
        memory_mib=[4096, 8192], reserved_mib=[512, 0], cpus=[4, 4], distances=GOOD
    )
    assert t.capacity_mib.tolist() == [3584, 8192]
    assert t.capacity_mib.dtype == np.int64
    with pytest.raises(ValueError):
        t.memory_mib[0] = 1  # read-only


def test_physical_rejects_too_many_pnodes() -> None:
    n = 65
    d = [[10 if i == j else 20 for j in range(n)] for i in range(n)]
    with pytest.raises(TopologyError):
        physical_from_lists(memory_mib=[1024] * n, reserved_mib=[0] * n, cpus=[1] * n, distances=d)


def test_virtual_collects_all_issues() -> None:
    with pytest.raises(TopologyError) as ei:
        virtual_from_lists(
            size_mib=[256, 100],
            vcpus=[[0, 1], [], [5]],
            distances=[[10, 20], [20, 10]],
            block_mib=96,
        )
    locs = {i.loc for i in ei.value.issues}
    assert ("block_mib",) in locs
    assert ("vnodes",) in locs  # vcpus list length mismatch
    with pytest.raises(TopologyError) as ei:
        virtual_from_lists(size_mib=[256, 200], vcpus=[[0, 2], []], distances=GOOD, block_mib=128)
    locs = {i.loc for i in ei.value.issues}
    assert ("vnodes", 1, "size_mib") in locs
    assert ("vnodes", 1, "vcpus") in locs  # a vnode without vCPUs
    assert ("vnodes",) in locs  # vCPU 1 missing
    with pytest.raises(TopologyError) as ei:
        virtual_from_lists(size_mib=[128], vcpus=[[0, 0]], distances=[[10]], block_mib=128)
    assert ei.value.issues[0].loc == ("vnodes", 0, "vcpus", 1)
    with pytest.raises(TopologyError):
        virtual_from_lists(
            size_mib=[128] * 33,
            vcpus=[[i] for i in range(33)],
            distances=[[10 if i == j else 20 for j in range(33)] for i in range(33)],
        )


def test_virtual_layout_helpers() -> None:
    t = virtual_from_lists(size_mib=[256, 512], vcpus=[[0, 2], [1]], distances=GOOD, block_mib=128)
    assert t.vcpu_count().tolist() == [2, 1]
    assert t.vcpu_vnode.tolist() == [0, 1, 0]
    assert t.memranges().tolist() == [[0, 256 * 256], [256 * 256, 768 * 256]]
    assert t.plugged_blocks(np.array([1, 384])).tolist() == [1, 3]
    assert t.block_pfn_ranges(1, 1, 2) == [
        (256 * 256 + 128 * 256, 256 * 256 + 256 * 256),
        (256 * 256 + 256 * 256, 256 * 256 + 384 * 256),
    ]
    with pytest.raises(InputError):
        t.block_pfn_ranges(1, 3, 2)
    with pytest.raises(InputError):
        t.plugged_blocks(np.array([300, 0]))
