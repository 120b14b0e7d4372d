"""A bounded, thread-safe memo for the engine's pure, deterministic searches.

Ranking a guest over a cluster builds, per host topology, a shortlist of mappings that depends
only on the guest's shape and the topology (never on a host's free memory), and searches the best
few hosts in depth. Orchestrators place the same flavours again and again, and most hosts do not
change between two requests: both results are kept, least recently used first out. Every search
is seeded, so a kept result is exactly the one a new search would return.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Memo(Generic[T]):
    """`get(key, compute)`: the kept value for `key`, or `compute()` kept. Two threads missing
    the same key may both compute it (the values are equal); the lock guards only the dict."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._values: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                self.hits += 1
                return self._values[key]
            self.misses += 1
        value = compute()
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.maxsize:
                self._values.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self.hits = self.misses = 0
