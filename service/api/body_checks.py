"""Linear-time checks of a JSON request body, run before FastAPI parses it.

Every check costs O(n) in the bytes received. CPython's JSON parser goes first: it is linear, it
refuses text that is not JSON, and its own recursion limit refuses absurd nesting. What it built is
then scanned once for depth. (A regular expression that stripped strings before counting brackets
used to take quadratic time on an unterminated string such as `"\\"\\"\\"...`.)
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

# \u0000 or a surrogate escape: only then is the parsed body walked string by string.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89abAB])")
_QUOTE = ord('"')
_NOT_STRUCTURAL = bytes(b for b in range(256) if b not in b'"[]{}')
_BRACKET = np.zeros(256, dtype=np.int8)
_BRACKET[[ord("["), ord("{")]] = 1
_BRACKET[[ord("]"), ord("}")]] = -1


class BodyIssue(ValueError):
    """A body that cannot be accepted; `loc` locates it like a validation error."""

    def __init__(self, loc: list[str | int], msg: str) -> None:
        super().__init__(msg)
        self.loc = loc
        self.msg = msg


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _DuplicateKey(key)
    return out


def check_json_body(body: bytes, max_depth: int) -> None:
    """Refuse nesting deeper than `max_depth`, duplicate keys, lone surrogates and NUL.

    RFC 8259 leaves duplicate keys to the implementation; taking the last one silently would let a
    body say two things at once. Lone surrogates cannot be stored as UTF-8 and NUL cannot be stored
    in PostgreSQL text: either would otherwise fail deep in the database as a 5xx. A body that is
    not JSON at all passes through: FastAPI's own parser reports it, located.
    """
    try:
        value = json.loads(body, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise BodyIssue(["body"], f"duplicate key {str(exc)[:64]!r} in a JSON object") from None
    except RecursionError:
        raise _too_deep(max_depth) from None
    except ValueError:
        return
    if json_depth(body) > max_depth:
        raise _too_deep(max_depth)
    if _SUSPECT_ESCAPE.search(body):
        _check_strings(value)


def json_depth(body: bytes) -> int:
    """Maximum nesting depth of a JSON text, brackets inside strings ignored; O(n), in C and numpy.

    Escape pairs are removed first (`\\\\`, then `\\"`), so every quote left delimits a string;
    only quotes and brackets are kept, and a bracket counts where an even number of quotes precede
    it. Exact for any text the JSON parser accepted.
    """
    structural = body.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURAL)
    if not structural:
        return 0
    chars = np.frombuffer(structural, dtype=np.uint8)
    outside = (np.cumsum(chars == _QUOTE, dtype=np.int32) & 1) == 0
    deltas = np.where(outside, _BRACKET[chars], 0).astype(np.int32)
    return max(int(np.cumsum(deltas).max()), 0)


def _too_deep(max_depth: int) -> BodyIssue:
    return BodyIssue(["body"], f"JSON nested deeper than {max_depth} levels")


def _check_strings(value: Any) -> None:
    """Walk the parsed body once (iteratively: depth is already bounded) checking every string."""
    stack: list[tuple[list[str | int], Any]] = [(["body"], value)]
    while stack:
        loc, item = stack.pop()
        if isinstance(item, str):
            _check_text(loc, item)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_text(loc, key)
                stack.append(([*loc, key], child))
        elif isinstance(item, list):
            stack.extend(([*loc, i], child) for i, child in enumerate(item))


def _check_text(loc: list[str | int], text: str) -> None:
    if "\x00" in text:
        raise BodyIssue(loc, "NUL characters are not allowed in strings")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BodyIssue(loc, "lone UTF-16 surrogate escapes are not valid text") from None
