"""Linear-time checks of a JSON request body, run before FastAPI parses it.

Every check costs O(n) in the bytes received. The body must be UTF-8 (RFC 8259 8.1): it is decoded
strictly, except that encoded surrogates (CESU-8, `\\xed\\xa0\\x80`) are let through so that the
string holding one can be named. CPython's JSON parser goes next: it is linear, it refuses text
that is not JSON, and its own recursion limit refuses absurd nesting. What it built is then scanned
once for depth. (A regular expression that stripped strings before counting brackets used to take
quadratic time on an unterminated string such as `"\\"\\"\\"...`.)

Whatever this module accepts, FastAPI's own `json.loads(bytes)` reads the same way: UTF-8 JSON
text holds no NUL byte, so the parser's encoding detection (which would read UTF-16 or UTF-32
into text that escapes every check here) always picks UTF-8.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

# Where a string may hold NUL or a surrogate: a \u0000 escape, a surrogate escape (either half,
# \ud800-\udfff) or an encoded surrogate (UTF-8 ED A0-BF). Only then is the parsed body walked.
_SUSPECT = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\xed[\xa0-\xbf]")
_BOM = "\ufeff"
# No object of a request has more than a few dozen members (labels and squeeze maps: 64); one of
# 90,000 unknown keys would otherwise cost a validation error each before the 422's list is cut.
MAX_OBJECT_MEMBERS = 1024
_QUOTE = ord('"')
_NOT_STRUCTURAL = bytes(b for b in range(256) if b not in b'"[]{}')
_BRACKET = np.zeros(256, dtype=np.int8)
_BRACKET[[ord("["), ord("{")]] = 1
_BRACKET[[ord("]"), ord("}")]] = -1
_SMALL = 64  # structural characters (a lease renewal's body has 4)
_OPENING = frozenset(b"[{")


class BodyIssue(ValueError):
    """A body that cannot be accepted; `loc` locates it like a validation error."""

    def __init__(self, loc: list[str | int], msg: str) -> None:
        super().__init__(msg)
        self.loc = loc
        self.msg = msg


class _DuplicateKey(ValueError):
    pass


class _TooManyMembers(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len(pairs) > MAX_OBJECT_MEMBERS:
        raise _TooManyMembers
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _DuplicateKey(key)
    return out


def check_json_body(body: bytes, max_depth: int) -> Any:
    """Refuse what is not UTF-8 JSON, nesting deeper than `max_depth`, objects of more than
    `MAX_OBJECT_MEMBERS` members, duplicate keys, lone surrogates and NUL.

    RFC 8259 leaves duplicate keys to the implementation; taking the last one silently would let a
    body say two things at once. Lone surrogates cannot be stored as UTF-8 and NUL cannot be stored
    in PostgreSQL text: either would otherwise fail deep in the database as a 5xx.
    Returns the parsed value (what `json.loads` makes of the body), for a route to reuse.
    """
    value = _parse(body, max_depth)
    if json_depth(body) > max_depth:
        raise _too_deep(max_depth)
    if _SUSPECT.search(body):
        _check_strings(value)
    return value


def _parse(body: bytes, max_depth: int) -> Any:
    try:
        text = body.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise BodyIssue(["body"], f"the body is not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text.removeprefix(_BOM), object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise BodyIssue(["body"], f"duplicate key {str(exc)[:64]!r} in a JSON object") from None
    except _TooManyMembers:
        msg = f"a JSON object has more than {MAX_OBJECT_MEMBERS} members"
        raise BodyIssue(["body"], msg) from None
    except RecursionError:
        raise _too_deep(max_depth) from None
    except json.JSONDecodeError as exc:
        raise BodyIssue(["body", exc.pos], f"JSON decode error: {exc.msg}") from None


def json_depth(body: bytes) -> int:
    """Maximum nesting depth of a JSON text, brackets inside strings ignored; O(n), in C and numpy.

    Escape pairs are removed first (`\\\\`, then `\\"`), so every quote left delimits a string;
    only quotes and brackets are kept, and a bracket counts where an even number of quotes precede
    it. Exact for any text the JSON parser accepted.
    """
    structural = body.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURAL)
    if len(structural) <= _SMALL:  # numpy's fixed cost is more than a short loop's
        return _small_depth(structural)
    chars = np.frombuffer(structural, dtype=np.uint8)
    outside = (np.cumsum(chars == _QUOTE, dtype=np.int32) & 1) == 0
    deltas = np.where(outside, _BRACKET[chars], 0).astype(np.int32)
    return max(int(np.cumsum(deltas).max()), 0)


def _small_depth(structural: bytes) -> int:
    depth = deepest = 0
    inside = False
    for char in structural:
        if char == _QUOTE:
            inside = not inside
        elif not inside:
            depth += 1 if char in _OPENING else -1
            deepest = max(deepest, depth)
    return deepest


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
        raise BodyIssue(loc, "lone UTF-16 surrogates (U+D800 to U+DFFF) are not text") from None
