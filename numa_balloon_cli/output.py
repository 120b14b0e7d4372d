"""Human tables by default, one JSON or YAML document for scripts, problems on stderr."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import yaml
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

from numa_balloon_client import ApiError

# No markup: names, details and tokens are printed as they are ("[lab]" stays "[lab]").
out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)


def tagged(tag: str, style: str, message: str) -> Text:
    """`error ...`, `failed ...` with the tag coloured, the message verbatim."""
    return Text.assemble((tag, style), " ", message)


def jsonable(data: Any) -> Any:
    """Models, lists and dicts of them as plain JSON data (pydantic's JSON mode)."""
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, dict):
        return {k: jsonable(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [jsonable(v) for v in data]
    return data


def dumps(data: Any, fmt: str) -> str:
    if fmt == "yaml":
        text: str = yaml.safe_dump(jsonable(data), sort_keys=False)
        return text.rstrip("\n")
    return json.dumps(jsonable(data), indent=2)


def emit(fmt: str, data: Any, human: Callable[[], None]) -> None:
    """Print `data` as one JSON/YAML document, or call `human` to draw it for people."""
    if fmt == "table":
        human()
    else:
        print(dumps(data, fmt))


def emit_line(fmt: str, data: Any, human: Callable[[], None]) -> None:
    """For streams (`events watch`): one compact JSON document per line."""
    if fmt == "json":
        print(json.dumps(jsonable(data)), flush=True)
    elif fmt == "yaml":
        print("---\n" + dumps(data, "yaml"), flush=True)
    else:
        human()


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    if title:
        out.print(Text(title, style="bold"))
    t = Table(show_edge=False, pad_edge=False)
    for c in columns:
        numeric = c.endswith("MiB") or c in ("PNODES", "VNODES", "SEQ", "SCORE", "DISTORTION")
        t.add_column(c, justify="right" if numeric else "left", overflow="fold")
    for row in rows:
        t.add_row(*(v if isinstance(v, Text) else Text("-" if v is None else str(v)) for v in row))
    out.print(t)


def fields(pairs: Iterable[tuple[str, Any]]) -> None:
    """`key: value` lines for one resource."""
    for key, value in pairs:
        out.print(Text.assemble((f"{key}:", "bold"), " ", "-" if value is None else str(value)))


def problem(exc: ApiError) -> None:
    """The problem's title, detail and every located error, on stderr."""
    err.print(tagged("error", "red", f"{exc.status} {exc.title}"))
    if exc.detail and exc.detail != exc.title:
        err.print(f"  {exc.detail}")
    for issue in exc.errors:
        err.print(f"  - {issue}")
    if exc.max_feasible_mib is not None:
        err.print(f"  max feasible: {exc.max_feasible_mib} MiB")
