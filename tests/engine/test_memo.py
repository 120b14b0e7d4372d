"""The engine's memo keeps at most `maxsize` values, dropping the least recently used."""

from __future__ import annotations

from service.engine.memo import Memo


def test_the_least_recently_used_value_goes_first_and_the_size_stays_bounded() -> None:
    memo: Memo[int] = Memo(maxsize=2)
    calls: list[str] = []

    def compute(key: str) -> int:
        calls.append(key)
        return len(calls)

    assert memo.get("a", lambda: compute("a")) == 1
    assert memo.get("b", lambda: compute("b")) == 2
    assert memo.get("a", lambda: compute("a")) == 1  # kept; now the most recent
    assert memo.get("c", lambda: compute("c")) == 3  # drops "b"
    assert memo.get("a", lambda: compute("a")) == 1
    assert memo.get("b", lambda: compute("b")) == 4  # computed again
    assert calls == ["a", "b", "c", "b"]
    assert (memo.hits, memo.misses) == (2, 4)
    memo.clear()
    assert (memo.hits, memo.misses) == (0, 0)
    assert memo.get("a", lambda: compute("a")) == 5
