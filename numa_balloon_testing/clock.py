"""A clock a test moves by hand: the app's `clock=` (one reading per request) made explicit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class ManualClock:
    """Reads `now` (a fixed instant, the wall clock's by default) until `advance` moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = datetime.now(UTC) if start is None else start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
