"""The retry of a unit of work aborted by the database (deadlock, serialization failure)."""

from __future__ import annotations

import psycopg.errors
import pytest
from sqlalchemy.exc import OperationalError

from service.db.retry import ATTEMPTS, is_retryable, run_with_retries
from service.db.session import make_engine, make_sessionmaker


def _aborted(error: Exception) -> OperationalError:
    return OperationalError("SELECT 1", {}, error)


def test_deadlocks_and_serialization_failures_are_retried_then_succeed(sqlite_url: str) -> None:
    session = make_sessionmaker(make_engine(sqlite_url))()
    failures = [
        _aborted(psycopg.errors.DeadlockDetected("deadlock detected")),
        _aborted(psycopg.errors.SerializationFailure("could not serialize")),
    ]
    calls = []

    def work() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "done"

    assert run_with_retries(session, work) == "done"
    assert len(calls) == 3


def test_other_errors_and_the_last_attempt_are_not_swallowed(sqlite_url: str) -> None:
    session = make_sessionmaker(make_engine(sqlite_url))()
    lost = _aborted(psycopg.errors.AdminShutdown("terminating connection"))
    assert not is_retryable(lost)
    with pytest.raises(OperationalError):
        run_with_retries(session, lambda: (_ for _ in ()).throw(lost))
    calls = []

    def always() -> None:
        calls.append(1)
        raise _aborted(psycopg.errors.DeadlockDetected("deadlock detected"))

    with pytest.raises(OperationalError):
        run_with_retries(session, always)
    assert len(calls) == ATTEMPTS
