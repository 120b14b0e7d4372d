"""Worked examples from the xen-devel thread (seed/), numbers in the names."""

from __future__ import annotations

import numpy as np

from service.engine import SqueezeInput, distribute, squeeze


def _snc_slit(sockets: int = 4, per_socket: int = 4) -> np.ndarray:
    """4 sockets x 4 SNC nodes: 10 local, 12 same socket, 32 other socket."""
    n = sockets * per_socket
    sock = np.arange(n) // per_socket
    d = np.where(sock[:, None] == sock[None, :], 12, 32)
    np.fill_diagonal(d, 10)
    return d.astype(np.int64)


def _guest_16_vnodes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vdist = _snc_slit()
    size = np.full(16, 1024, dtype=np.int64)
    weight = np.ones(16, dtype=np.int64)
    weight[0] = 17  # 32 vCPUs: 17 on vnode 0 (the home vnode), one on every other vnode
    return vdist, size, weight


def test_faithful_16_vnode_guest_moved_from_1_node_to_16_node_host_empties_closest_pool() -> None:
    vdist, size, weight = _guest_16_vnodes()
    pdist = _snc_slit()
    home = np.zeros(16, dtype=np.int64)  # every vCPU runs on pnode 0
    headroom = np.full(16, 64 * 1024, dtype=np.int64)
    headroom[:4] = 0  # pnode 0 and its socket have no free memory: all memory is remote
    target = 8 * 1024
    x = distribute(
        target_mib=target,
        size_mib=size,
        headroom_mib=headroom,
        home=home,
        vdist=vdist,
        pdist=pdist,
        policy="faithful",
        vcpu_count=weight,
    )
    pools = x.sum(axis=1)
    assert int(x.sum()) == target
    assert pools[0] == 0  # the closest pool (vdist 10) is emptied
    assert pools[1:4].sum() == 0  # and so are the same-socket pools (vdist 12)
    assert (pools[4:] > 0).sum() == 8  # the memory sits in the farthest (vdist 32) pools
    assert (x[:, :4] == 0).all()
    # Full guest (16 GiB): the farthest pools fill completely before any near pool.
    x = distribute(
        target_mib=14 * 1024,
        size_mib=size,
        headroom_mib=headroom,
        home=home,
        vdist=vdist,
        pdist=pdist,
        policy="faithful",
        vcpu_count=weight,
    )
    pools = x.sum(axis=1)
    assert (pools[4:] == 1024).all() and pools[0] == 0


def test_faithful_16_vnode_guest_on_1_node_host_fills_home_pool_first() -> None:
    vdist, size, weight = _guest_16_vnodes()
    x = distribute(
        target_mib=1024,
        size_mib=size,
        headroom_mib=np.array([64 * 1024]),
        home=np.zeros(16, dtype=np.int64),
        vdist=vdist,
        pdist=np.array([[10]]),
        policy="faithful",
        vcpu_count=weight,
    )
    assert x[:, 0].tolist() == [1024] + [0] * 15
    x = distribute(
        target_mib=3 * 1024,
        size_mib=size,
        headroom_mib=np.array([64 * 1024]),
        home=np.zeros(16, dtype=np.int64),
        vdist=vdist,
        pdist=np.array([[10]]),
        policy="faithful",
        vcpu_count=weight,
    )
    pools = x[:, 0]
    assert pools[0] == 1024 and pools[1:4].sum() == 2048 and pools[4:].sum() == 0


def test_round_robin_1_gib_decrease_over_4_pools_takes_256_mib_each() -> None:
    size = np.full(4, 2048, dtype=np.int64)
    pdist = np.array([[10, 21], [21, 10]])
    vdist = np.array([[10, 20, 20, 20], [20, 10, 20, 20], [20, 20, 10, 20], [20, 20, 20, 10]])
    home = np.array([0, 0, 1, 1])
    current = np.array([[1024, 0], [1024, 0], [0, 1024], [0, 1024]], dtype=np.int64)
    x = distribute(
        target_mib=4096 - 1024,
        size_mib=size,
        headroom_mib=np.array([8192, 8192]),
        home=home,
        vdist=vdist,
        pdist=pdist,
        policy="round-robin",
        current_mib=current,
        block_mib=128,
    )
    assert (current.sum(axis=1) - x.sum(axis=1)).tolist() == [256, 256, 256, 256]
    assert x.tolist() == [[768, 0], [768, 0], [0, 768], [0, 768]]


def test_squeeze_skips_uncooperative_guest_and_holds_it_at_actual_size() -> None:
    # One pnode of 8 GiB; two cooperative guests at 3 GiB, one uncooperative guest whose
    # target is 1 GiB but whose balloon driver is stuck at 1.5 GiB.
    backing = np.array([[[3072]], [[3072]], [[1024]]], dtype=np.int64)
    inp = SqueezeInput(
        backing_mib=backing,
        size_mib=np.full((3, 1), 4096, dtype=np.int64),
        home=np.zeros((3, 1), dtype=np.int64),
        dynamic_min_mib=np.array([1024, 1024, 512]),
        dynamic_max_mib=np.array([4096, 4096, 4096]),
        target_mib=np.array([3072, 3072, 1024]),
        actual_mib=np.array([3072, 3072, 1536]),
        active=np.array([True, True, False]),
        capacity_mib=np.array([8192]),
        claimed_mib=np.array([0]),
        free_mib=np.array([2048]),
    )
    plan = squeeze(inp)
    # The uncooperative guest is held at its actual 1.5 GiB and never counted on to give.
    assert plan.target_mib[2] == 1536
    assert plan.backing_mib[2].tolist() == backing[2].tolist()
    assert 2 not in plan.order
    # The others share 8192 - 1536 - 2048 = 4608 MiB with one gamma: 2304 each.
    assert plan.target_mib[:2].tolist() == [2304, 2304]
    assert plan.decreases == (0, 1) and plan.increases == ()
    assert plan.free_mib_after.tolist() == [2048]
    assert abs(plan.gamma - (2304 - 1024) / 3072) < 1e-9
