"""Human tables by default (`-o wide`: more columns), one JSON or YAML document for scripts,
problems on stderr."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from numa_balloon_client import ApiError

Format = Literal["table", "wide", "json", "yaml"]
HUMAN = ("table", "wide")

# No markup anywhere: names, details and tokens print as they are ("[lab]" stays "[lab]", and a
# problem's "outside [dynamic_min, dynamic_max]" keeps its brackets). Styles go through Text.
out = Console(highlight=False, soft_wrap=True, markup=False)  # a line stays one line, piped too
# Errors are one line each, whatever the terminal's width: never wrapped.
err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)

#: Right-aligned columns besides the `... MiB` ones.
NUMERIC = frozenset(
    {"PNODES", "VNODES", "DOMAINS", "SEQ", "SCORE", "DISTORTION", "PNODE", "VNODE", "CPUS"}
    | {"HOME", "PLUGGED"}
)


def numeric(column: str) -> bool:
    return column.endswith("MiB") or column in NUMERIC


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
    if fmt in HUMAN:
        human()
    else:
        print(dumps(data, fmt))


def emit_line(fmt: str, data: Any, human: Callable[[], None]) -> None:
    """For streams (`events watch`, `--watch`): one compact JSON document per line."""
    if fmt == "json":
        print(json.dumps(jsonable(data)), flush=True)
    elif fmt == "yaml":
        print("---\n" + dumps(data, "yaml"), flush=True)
    else:
        human()


def shown(value: Any) -> str:
    """How a value reads in a table or a `key: value` line: `-` for nothing, yes/no."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def cell(value: Any) -> Text:
    return value if isinstance(value, Text) else Text(shown(value))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    if title:
        out.print(Text(title, style="bold"))
    t = Table(show_edge=False, pad_edge=False)
    for c in columns:
        t.add_column(c, justify="right" if numeric(c) else "left", no_wrap=True)
    for row in rows:
        t.add_row(*(cell(v) for v in row))
    print_unwrapped(t)


def print_unwrapped(renderable: RenderableType) -> None:
    """Draw at the content's natural width even past the terminal's (which then wraps whole
    lines, as kubectl's do): a cell is never folded, so ids stay whole for copy and grep."""
    need = Measurement.get(out, out.options.update_width(1 << 16), renderable).maximum
    if need <= out.width:
        out.print(renderable)
        return
    wide = Console(
        file=out.file,
        width=need,
        highlight=False,
        markup=False,
        soft_wrap=False,
        force_terminal=out.is_terminal,
        color_system=out.color_system,  # type: ignore[arg-type]
    )
    wide.print(renderable)


def fields(pairs: Iterable[tuple[str, Any]]) -> None:
    """`key: value` lines for one resource."""
    for key, value in pairs:
        out.print(Text.assemble((f"{key}:", "bold"), " ", shown(value)))


def when(at: datetime | None) -> str | None:
    return None if at is None else f"{at:%Y-%m-%d %H:%M:%S}"


def labels(values: dict[str, str]) -> str | None:
    return ",".join(f"{k}={v}" for k, v in sorted(values.items())) or None


def problem(exc: ApiError, names: Callable[[str], str] = str) -> None:
    """The problem's title, detail and every located error, on stderr; `names` puts names for
    the ids in the detail (a 409 says which host, not which UUID)."""
    err.print(tagged("error", "red", f"{exc.status} {exc.title}"))
    if exc.detail and exc.detail != exc.title:
        err.print(f"  {names(exc.detail)}")
    for issue in exc.errors:
        err.print(f"  - {issue}")
    if exc.max_feasible_mib is not None:
        err.print(f"  max feasible: {exc.max_feasible_mib} MiB")
