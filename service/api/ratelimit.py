"""In-process rate limits (per replica): requests per API key, failed authentications per address.

The failed-authentication limit only ever turns a failure into a slower failure: a credential is
checked first, and a valid one is let through whatever its address has done (an address is shared
behind NAT, and before trusted proxies were configured it could be named by anyone). An address
over its budget gets 429 with `Retry-After` instead of 401 for each credential that fails.

GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp per key): O(1) per
request, no background thread, and the exact wait for `Retry-After`. The `limits` package's
in-memory storage would start a timer thread every 10 ms of traffic for its expiry sweep; this is
the whole algorithm. Keys are bounded (least recently seen evicted first): an evicted key only
gets a fresh budget, the same as one that has been idle for a full burst.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from service.errors import ServiceError, TooManyRequests


class RateLimiter:
    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = rate_per_s > 0
        self.interval_s = 1.0 / rate_per_s if self.enabled else 0.0
        self.window_s = self.interval_s * max(burst, 1)
        self.max_keys = max_keys
        self.clock = clock
        self._tat: OrderedDict[str, float] = OrderedDict()  # theoretical arrival time per key

    def wait_s(self, key: str) -> float:
        """Seconds until `key` may make one more request (0: now). Consumes nothing."""
        if not self.enabled:
            return 0.0
        tat = self._tat.get(key)
        if tat is None:
            return 0.0
        return max(0.0, tat + self.interval_s - self.window_s - self.clock())

    def hit(self, key: str) -> float:
        """Count one request for `key` if the budget allows: 0.0, else the seconds to wait."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        tat = max(self._tat.get(key, now), now)
        wait = tat + self.interval_s - self.window_s - now
        if wait > 0:
            return wait
        self._tat[key] = tat + self.interval_s
        self._tat.move_to_end(key)
        if len(self._tat) > self.max_keys:
            self._tat.popitem(last=False)
        return 0.0


def retry_after(wait_s: float) -> int:
    """`Retry-After` is whole seconds: round up, so a client that obeys it gets through."""
    return max(1, math.ceil(wait_s))


class Limits:
    """The two limits of one app (one replica)."""

    def __init__(self, key_rate_per_s: float, failed_auth_per_min: int) -> None:
        self.per_key = RateLimiter(key_rate_per_s, burst=max(1, int(2 * key_rate_per_s)))
        self.failed_auth = RateLimiter(failed_auth_per_min / 60.0, burst=failed_auth_per_min)

    def failed_authentication(self, address: str, failure: ServiceError) -> ServiceError:
        """Count one failed authentication from `address`; the error to answer with: `failure`
        itself within the budget, 429 beyond it."""
        wait = self.failed_auth.hit(address)
        if wait <= 0:
            return failure
        return TooManyRequests(
            f"too many failed authentications from {address} ({failure.detail})",
            retry_after(wait),
        )
