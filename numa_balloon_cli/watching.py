"""`--watch` on lists, as `kubectl get -w`: the list, then each object again when it changes.

The log's head is read before the list, so nothing that happens between the two is missed; each
batch of new events (long-poll) re-reads the list with the same filters and prints what differs:
in a table a row whose cells changed (`deleted` in its STATE for one that went), with `-o json`
or `yaml` one `{"type": ADDED|MODIFIED|DELETED, "object": ...}` document per change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from numa_balloon_cli.output import cell, emit_line, jsonable, numeric
from numa_balloon_cli.state import State

T = TypeVar("T", bound=BaseModel)
GAP = "   "
#: Seconds one long-poll waits before asking again (the server caps it at 60).
WAIT_S = 25.0


@dataclass
class Listing(Generic[T]):
    """What a list command shows, for `follow`."""

    columns: Sequence[str]
    fetch: Callable[[], list[T]]  # the objects now, with the command's filters
    row: Callable[[T], Sequence[Any]]
    key: Callable[[T], str] = lambda item: str(getattr(item, "id", ""))


class Rows:
    """Plain aligned lines whose widths are fixed by the first table (later rows line up)."""

    def __init__(self, columns: Sequence[str], rows: list[Sequence[Any]]) -> None:
        self.columns = list(columns)
        self.widths = [
            max([len(c), *(len(cell(r[i]).plain) for r in rows)]) for i, c in enumerate(columns)
        ]

    def print(self, values: Sequence[Any]) -> None:
        texts = [
            cell(v).plain.rjust(w) if numeric(c) else cell(v).plain.ljust(w)
            for c, v, w in zip(self.columns, values, self.widths, strict=True)
        ]
        print(GAP.join(texts).rstrip(), flush=True)

    def deleted(self, values: Sequence[Any]) -> list[Any]:
        return ["deleted" if c == "STATE" else v for c, v in zip(self.columns, values, strict=True)]


def follow(st: State, listing: Listing[T], count: int | None) -> None:
    """Print the list, then each change until `count` changes (or Ctrl-C)."""
    head = st.nb.latest_event_seq()
    items = {listing.key(x): x for x in listing.fetch()}
    rows = Rows(listing.columns, [listing.row(x) for x in items.values()])
    if st.human:
        rows.print(listing.columns)
        for x in items.values():
            rows.print(listing.row(x))
    else:
        for x in items.values():
            emit_line(st.output, {"type": "ADDED", "object": x}, lambda: None)
    changes = 0
    try:
        while count is None or changes < count:
            events = st.nb.poll_events(head, wait_s=WAIT_S)
            if not events:
                continue
            head = max(e.seq for e in events)
            now = {listing.key(x): x for x in listing.fetch()}
            for kind, obj in _diff(st, listing, items, now):
                if st.human:
                    row = listing.row(obj)
                    rows.print(rows.deleted(row) if kind == "DELETED" else row)
                else:
                    emit_line(st.output, {"type": kind, "object": obj}, lambda: None)
                changes += 1
                if count is not None and changes >= count:
                    return
            items = now
    except KeyboardInterrupt:
        return


def _diff(
    st: State, listing: Listing[T], before: dict[str, T], after: dict[str, T]
) -> list[tuple[str, T]]:
    """What changed, in list order (gone ones last): rows in a table, objects otherwise."""

    def same(a: T, b: T) -> bool:
        if st.human:
            return [cell(v).plain for v in listing.row(a)] == [
                cell(v).plain for v in listing.row(b)
            ]
        return bool(jsonable(a) == jsonable(b))

    changed: list[tuple[str, T]] = []
    for key, obj in after.items():
        if key not in before:
            changed.append(("ADDED", obj))
        elif not same(before[key], obj):
            changed.append(("MODIFIED", obj))
    changed += [("DELETED", obj) for key, obj in before.items() if key not in after]
    return changed
