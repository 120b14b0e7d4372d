"""Migration planning and AutoNUMA rebalance benchmark.

Run from the repo root: ``.venv/bin/python -m bench.migration [--quick]``.  Times (median over
repeats) plan_migration for a 32-vnode, 1 TiB guest (768 GiB target) between an 8-pnode and a
64-pnode host, both directions and both strategies, and plan_rebalance on a 64-pnode host with
200 domains x 8 vnodes under a 64 GiB budget.  The last line is machine-readable.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from bench.timing import median_ms
from service.engine import distribute, plan_migration, plan_rebalance

I64 = NDArray[np.int64]
GIB = 1024


def _slit(sockets: int, per_socket: int) -> I64:
    n = sockets * per_socket
    sock = np.arange(n) // per_socket
    d = np.where(sock[:, None] == sock[None, :], 16, 32)
    np.fill_diagonal(d, 10)
    return d.astype(np.int64)


def _host(p: int) -> dict[str, I64]:
    pd = _slit(4, 2) if p == 8 else _slit(8, 8)
    free = np.full(p, 2048 * GIB // p, dtype=np.int64)
    return dict(
        pdist=pd, free=free, cpus=np.full(p, 16, dtype=np.int64), load=np.zeros(p, dtype=np.int64)
    )


def _guest() -> dict[str, Any]:
    vdist = _slit(4, 8)  # the worst-case template: 32 vnodes in 4 "sockets"
    size = np.full(32, 32 * GIB, dtype=np.int64)  # 1 TiB static max
    return dict(
        size_mib=size,
        vcpu_count=np.full(32, 2, dtype=np.int64),
        vdist=vdist,
        block_mib=128,
        dynamic_min_mib=512 * GIB,
        dynamic_max_mib=1024 * GIB,
    )


def _migration_case(
    ps: int, pdst: int, strategy: Literal["rebalance", "replug"]
) -> Callable[[], Any]:
    g = _guest()
    src, dst = _host(ps), _host(pdst)
    home = np.arange(32, dtype=np.int64) * ps // 32
    xs = distribute(
        target_mib=768 * GIB,
        size_mib=g["size_mib"],
        headroom_mib=src["free"],
        home=home,
        vdist=g["vdist"],
        pdist=src["pdist"],
        policy="faithful",
        vcpu_count=g["vcpu_count"],
    )

    def run() -> Any:
        return plan_migration(
            **g,
            backing_src=xs,
            home_src=home,
            pdist_src=src["pdist"],
            free_dst_mib=dst["free"],
            cpus_dst=dst["cpus"],
            pdist_dst=dst["pdist"],
            load_vcpus_dst=dst["load"],
            strategy=strategy,
        )

    return run


def _rebalance_case(d: int = 200, v: int = 8, p: int = 64) -> Callable[[], Any]:
    rng = np.random.default_rng(0)
    pd = _slit(8, 8)
    size = np.full((d, v), 4 * GIB, dtype=np.int64)
    home = rng.integers(0, p, size=(d, v)).astype(np.int64)
    x = np.zeros((d, v, p), dtype=np.int64)
    t = rng.integers(8, 32, size=(d, v)) * 128
    other = rng.integers(0, p, size=(d, v))
    np.put_along_axis(x, home[:, :, None], (t // 2)[:, :, None], axis=2)
    np.put_along_axis(
        x,
        other[:, :, None],
        (t - t // 2)[:, :, None] + np.take_along_axis(x, other[:, :, None], axis=2),
        axis=2,
    )
    vd = np.broadcast_to(_slit(2, 4), (d, v, v)).copy()
    free = np.full(p, 8 * GIB, dtype=np.int64)

    def run() -> Any:
        return plan_rebalance(
            backing_mib=x,
            size_mib=size,
            vdist=vd,
            vcpu_count=np.ones((d, v), dtype=np.int64),
            home=home,
            block_mib=np.full(d, 128, dtype=np.int64),
            pdist=pd,
            free_mib=free,
            budget_mib=64 * GIB,
        )

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    args = ap.parse_args()
    repeat = 3 if args.quick else 9
    print(
        f"{'case':<44} {'median_ms':>10} {'steps':>6} {'moved_gib':>10} "
        f"{'dist_before':>11} {'dist_after':>10}"
    )
    results: dict[tuple[int, int, str], tuple[float, int]] = {}
    for ps, pdst in ((8, 64), (64, 8)):
        for strategy in ("rebalance", "replug"):
            run = _migration_case(ps, pdst, strategy)  # type: ignore[arg-type]
            plan = run()
            ms = median_ms(run, repeat)
            results[(ps, pdst, strategy)] = (ms, len(plan.steps))
            print(
                f"{f'migration 32v 1TiB {ps}p->{pdst}p {strategy}':<44} {ms:>10.1f} "
                f"{len(plan.steps):>6} {plan.moved_mib / GIB:>10.1f} "
                f"{plan.distortion_before:>11.3f} {plan.distortion_after:>10.3f}"
            )
    run_r = _rebalance_case()
    rp = run_r()
    ms = median_ms(run_r, max(1, repeat // 3))
    print(
        f"{'rebalance 64p 200 domains x 8v, 64 GiB':<44} {ms:>10.1f} {len(rp.moves):>6} "
        f"{rp.moved_mib / GIB:>10.1f} {rp.distortion_before:>11.3f} "
        f"{rp.distortion_after:>10.3f}"
    )
    reb, rep = results[(8, 64, "rebalance")], results[(8, 64, "replug")]
    print(
        f"migration plan 32v 1TiB 8p->64p: rebalance_ms={reb[0]:.1f} replug_ms={rep[0]:.1f} "
        f"steps={reb[1]}"
    )


if __name__ == "__main__":
    main()
