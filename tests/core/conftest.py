"""tests/core runs the rules without a database: any attempt to connect fails the test."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine


@pytest.fixture(autouse=True)
def no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("tests/core must not touch a database")

    monkeypatch.setattr(Engine, "connect", refuse)
    monkeypatch.setattr(Engine, "raw_connection", refuse)
