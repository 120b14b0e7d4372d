"""Retry a whole unit of work when PostgreSQL aborted it to break a deadlock or a serialization
conflict (SQLSTATE 40P01, 40001). Such an abort says nothing about the request: run again, it
almost always succeeds. Bounded, with jittered backoff; the last failure goes to the caller.

Host rows are locked in one global order, so deadlocks among our own writers should not occur;
this is the second line, for locks taken implicitly (foreign-key checks, index pages)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
ATTEMPTS = 4
BACKOFF_S = 0.01

T = TypeVar("T")
log = logging.getLogger("numa_balloon")


def is_retryable(exc: BaseException) -> bool:
    """A deadlock or serialization failure reported by the database driver."""
    orig = getattr(exc, "orig", None)
    return isinstance(exc, DBAPIError) and getattr(orig, "sqlstate", None) in RETRYABLE_SQLSTATES


def run_with_retries(session: Session, work: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """`work()` on `session`, rolled back and run again on a retryable abort."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except DBAPIError as exc:
            if attempt == attempts or not is_retryable(exc):
                raise
            log.info("retrying a unit of work (%s), attempt %d", exc.orig, attempt + 1)
            session.rollback()
            session.expire_all()
            time.sleep(random.uniform(0, BACKOFF_S * 2**attempt))
    raise AssertionError("unreachable")
