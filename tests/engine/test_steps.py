"""Pool change operations: replayed, they reach the new targets through whole blocks."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from service.engine.steps import pool_change_ops
from service.engine.topology import PAGES_PER_MIB, virtual_from_lists


@given(
    blocks=st.lists(st.integers(1, 8), min_size=1, max_size=6),
    data=st.data(),
)
def test_ops_replay_to_the_new_targets_within_each_span(
    blocks: list[int], data: st.DataObject
) -> None:
    block = 128
    sizes = [b * block for b in blocks]
    k = len(sizes)
    topo = virtual_from_lists(
        size_mib=sizes,
        vcpus=[[v] for v in range(k)],
        distances=[[10 if u == v else 20 for u in range(k)] for v in range(k)],
        block_mib=block,
    )
    before = np.array([data.draw(st.integers(0, s)) for s in sizes], dtype=np.int64)
    after = np.array([data.draw(st.integers(0, s)) for s in sizes], dtype=np.int64)
    pools = before.copy()
    spans = topo.memranges()
    for op in pool_change_ops(topo=topo, before_mib=before, after_mib=after):
        delta = op.target_mib - int(pools[op.vnode])
        assert abs(delta) == op.mib > 0
        assert (op.op == "plug") == (delta > 0 and bool(op.pfn_ranges))
        if op.op == "unplug":
            assert delta < 0
        for start, end in op.pfn_ranges:
            assert spans[op.vnode, 0] <= start < end <= spans[op.vnode, 1]
            assert (start - spans[op.vnode, 0]) % (block * PAGES_PER_MIB) == 0
            assert end - start == block * PAGES_PER_MIB
        pools[op.vnode] = op.target_mib
        assert 0 <= pools[op.vnode] <= sizes[op.vnode]
    assert pools.tolist() == after.tolist()


def test_1_gib_shrink_of_a_2_gib_pool_unplugs_8_blocks_of_128_mib() -> None:
    topo = virtual_from_lists(size_mib=[2048], vcpus=[[0]], distances=[[10]], block_mib=128)
    ops = pool_change_ops(topo=topo, before_mib=np.array([2048]), after_mib=np.array([1024]))
    assert [(o.op, o.mib, o.target_mib) for o in ops] == [("unplug", 1024, 1024)]
    assert ops[0].pfn_ranges[0] == (1024 * 256, 1024 * 256 + 128 * 256)
    assert len(ops[0].pfn_ranges) == 8


def test_growth_inside_the_top_block_is_a_balloon_deflate() -> None:
    topo = virtual_from_lists(size_mib=[1024], vcpus=[[0]], distances=[[10]], block_mib=128)
    ops = pool_change_ops(topo=topo, before_mib=np.array([100]), after_mib=np.array([120]))
    assert [(o.op, o.mib) for o in ops] == [("balloon", 20)]
    ops = pool_change_ops(topo=topo, before_mib=np.array([100]), after_mib=np.array([300]))
    assert [(o.op, o.mib, o.target_mib) for o in ops] == [("balloon", 28, 128), ("plug", 172, 300)]
