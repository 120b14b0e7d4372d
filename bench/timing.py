"""The benchmarks' one timer: median wall time of repeated calls, in ms."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(fn: Callable[[], object], repeats: int, *, warmup: bool = True) -> float:
    """`warmup`: one untimed call first (caches, lazy imports); off for calls too slow to
    repeat, such as the capped Nova-style searches."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3
