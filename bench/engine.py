"""Engine benchmark: batched distribute and per-host squeeze vs the pure-Python references.

Run from the repo root: ``.venv/bin/python -m bench.engine [--quick]``.  The reference is run
on a sample of the domains when the full host would take too long and its time is extrapolated
linearly in the domain count (marked ``*`` in the table); distribute is per-domain anyway, and
the reference squeeze is linear in domains per bisection step.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from bench.timing import median_ms
from numa_balloon_testing.reference import ref_distribute, ref_squeeze
from service.engine import SqueezeInput, distribute_many, squeeze


def _host(d: int, v: int, p: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    size = np.full((d, v), 1024, dtype=np.int64)
    home = rng.integers(0, p, size=(d, v)).astype(np.int64)
    x = np.zeros((d, v, p), dtype=np.int64)
    np.put_along_axis(x, home[:, :, None], rng.integers(256, 1024, size=(d, v, 1)), axis=2)
    pd = np.full((p, p), 21, dtype=np.int64)
    np.fill_diagonal(pd, 10)
    vd = np.full((d, v, v), 20, dtype=np.int64)
    vd[:, np.arange(v), np.arange(v)] = 10
    cap = np.full(p, int(d * v * 700 // p) + 1024, dtype=np.int64)
    return {"size": size, "home": home, "x": x, "pdist": pd, "vdist": vd, "cap": cap}


def _squeeze_input(h: dict[str, np.ndarray]) -> SqueezeInput:
    d, v, p = h["x"].shape
    cur = h["x"].sum(axis=(1, 2))
    return SqueezeInput(
        backing_mib=h["x"],
        size_mib=h["size"],
        home=h["home"],
        dynamic_min_mib=np.full(d, 256 * v, dtype=np.int64),
        dynamic_max_mib=np.full(d, 1024 * v, dtype=np.int64),
        target_mib=cur,
        actual_mib=cur,
        active=np.ones(d, dtype=bool),
        capacity_mib=h["cap"],
        claimed_mib=np.zeros(p, dtype=np.int64),
        balance=True,
    )


def _bench(d: int, v: int, p: int, quick: bool) -> tuple[float, float, bool, float, float, bool]:
    h = _host(d, v, p)
    head = np.tile(h["cap"] // max(d // p, 1) + 4096, (d, 1))
    target = (h["size"].sum(axis=1) * 3 // 4).astype(np.int64)
    repeat = 3 if quick else (7 if d * v * p <= 1_000_000 else 3)

    def np_dist() -> object:
        return distribute_many(
            target_mib=target,
            size_mib=h["size"],
            headroom_mib=head,
            home=h["home"],
            vdist=h["vdist"],
            pdist=h["pdist"],
            policy="proportional",
        )

    dist_np = median_ms(np_dist, repeat)
    sample = min(d, max(5, (2_000 if quick else 20_000) // (v * p)))
    lists = [
        (
            int(target[i]),
            h["size"][i].tolist(),
            head[i].tolist(),
            h["home"][i].tolist(),
            h["vdist"][i].tolist(),
        )
        for i in range(sample)
    ]
    pdl = h["pdist"].tolist()

    def ref_dist() -> object:
        return [ref_distribute(t, s, hh, hm, vd, pdl, "proportional") for t, s, hh, hm, vd in lists]

    dist_ref = median_ms(ref_dist, 1) * d / sample

    inp = _squeeze_input(h)
    sq_np = median_ms(lambda: squeeze(inp), repeat * 3)
    ssample = min(d, max(5, (64_000 if quick else 200_000) // (v * p)))
    hs = {
        k: (a[:ssample] if a.ndim and a.shape[0] == d and k != "cap" else a) for k, a in h.items()
    }
    hs["cap"] = h["cap"] * ssample // d + 1
    sub = _squeeze_input(hs)
    args = (
        sub.backing_mib.tolist(),
        sub.size_mib.tolist(),
        sub.home.tolist(),
        sub.dynamic_min_mib.tolist(),
        sub.dynamic_max_mib.tolist(),
        sub.actual_mib.tolist(),
        sub.active.tolist(),
        sub.capacity_mib.tolist(),
        sub.claimed_mib.tolist(),
    )
    sq_ref = median_ms(lambda: ref_squeeze(*args), 1) * d / ssample
    return dist_np, dist_ref, sample < d, sq_np, sq_ref, ssample < d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a short smoke run (< 30 s)")
    ns = ap.parse_args()
    if ns.quick:
        combos = [(10, 8, 8), (100, 8, 8), (1000, 1, 2), (1000, 8, 8)]
    else:
        combos = [
            (d, v, p)
            for d in (10, 100, 1000, 10000)
            for v in (1, 8, 32)
            for p in (2, 8, 64)
            if d * v * p <= 5_200_000
        ]
        combos.remove((1000, 8, 8))
        combos.append((1000, 8, 8))  # the headline case goes last
    if os.environ.get("OPENBLAS_CORETYPE"):
        print(
            f"note: OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} is set; numpy may be "
            "slower than usual"
        )
    print(
        "grid minus D*V*P > 5.2M (10000x32x64: memory); "
        "* = reference timed on a sample of domains and extrapolated linearly"
    )
    hdr = (
        f"{'D x V x P':>16} | {'dist np ms':>10} {'dist ref ms':>12} {'speedup':>8} | "
        f"{'squeeze np ms':>13} {'squeeze ref ms':>14} {'speedup':>8}"
    )
    print(hdr)
    print("-" * len(hdr))
    last = (0.0, 0.0)
    for d, v, p in combos:
        dn, dr, ds, sn, sr, ss = _bench(d, v, p, ns.quick)
        print(
            f"{f'{d}x{v}x{p}':>16} | {dn:10.3f} {dr:11.1f}{'*' if ds else ' '} "
            f"{dr / dn:8.0f} | {sn:13.3f} {sr:13.1f}{'*' if ss else ' '} {sr / sn:8.0f}",
            flush=True,
        )
        last = (sn, sr)
    sn, sr = last
    print(f"engine squeeze 1000x8x8: numpy_ms={sn:.3f} reference_ms={sr:.1f} speedup={sr / sn:.1f}")


if __name__ == "__main__":
    main()
