"""Read xl.cfg(5) domain configs (xendomains keeps them in /etc/xen and /etc/xen/auto) to find a
domain's file by its `uuid`, and rewrite its `vnuma` binding for `xl create FILE 'vnuma=[...]'`.

The reader follows the lexer and grammar of Xen's libxlutil (the parser `xl` uses), not a regex
over lines, so a `uuid` in a comment, inside a string, after a `;` or in a list spread over lines
is read as xl reads it:

- `KEY = VALUE` settings, separated by newlines or `;`; `KEY += [...]` appends to a list;
- values: "double-quoted" strings with backslash escapes, 'single-quoted' strings without,
  numbers and bare words, and `[ ... ]` lists (nested, trailing comma allowed, newlines inside);
- `#` starts a comment to the end of the line (outside strings);
- a key set twice keeps its last value (libxlutil finds the newest setting first), which is also
  why `xl create FILE 'KEY=VALUE'` overrides the file: xl appends the pair after its contents.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

Value = str | list["Value"]
Settings = dict[str, Value]

#: A config larger than this is not an xl.cfg (the biggest real ones are a few KiB).
MAX_CONFIG_BYTES = 1 << 20

_TOKEN = re.compile(
    r"""(?P<space>[ \t\r]+)
      | (?P<comment>\#[^\n]*)
      | (?P<newline>\n)
      | (?P<dq>"(?:[^"\\\n]|\\[^\n])*")
      | (?P<sq>'[^'\n]*')
      | (?P<word>[A-Za-z0-9_.]+)
      | (?P<op>\+=|[=,;\[\]])""",
    re.VERBOSE,
)
_UNESCAPE = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}
_ESCAPE = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


class XlCfgError(ValueError):
    pass


Token = tuple[str, str, int]  # kind (word, string, op, newline, end), text, line


def _tokens(text: str) -> list[Token]:
    out: list[Token] = []
    line, pos = 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise XlCfgError(f"line {line}: unexpected {text[pos]!r}")
        kind, got = m.lastgroup or "", m.group()
        if kind == "dq":
            out.append(("string", re.sub(r"\\(.)", _unescape, got[1:-1]), line))
        elif kind == "sq":
            out.append(("string", got[1:-1], line))
        elif kind in ("word", "op", "newline"):
            out.append((kind if kind != "op" else got, got, line))
        line += got.count("\n")
        pos = m.end()
    out.append(("end", "", line))
    return out


def _unescape(m: re.Match[str]) -> str:
    return _UNESCAPE.get(m.group(1), m.group(1))


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self, *kinds: str) -> Token:
        tok = self.tokens[self.i]
        if tok[0] not in kinds:
            what = tok[1] or tok[0]
            raise XlCfgError(f"line {tok[2]}: expected {' or '.join(kinds)}, found {what!r}")
        self.i += 1
        return tok

    def skip_newlines(self) -> None:
        while self.peek()[0] == "newline":
            self.i += 1

    def settings(self) -> Settings:
        out: Settings = {}
        while True:
            while self.peek()[0] in ("newline", ";"):
                self.i += 1
            if self.peek()[0] == "end":
                return out
            key = self.take("word")[1]
            op = self.take("=", "+=")[0]
            value = self.value()
            old = out.get(key)
            if op == "+=" and isinstance(old, list) and isinstance(value, list):
                value = old + value
            out[key] = value
            if self.peek()[0] != "end":
                self.take("newline", ";")

    def value(self) -> Value:
        tok = self.take("string", "word", "[")
        if tok[0] != "[":
            return tok[1]
        items: list[Value] = []
        self.skip_newlines()
        while self.peek()[0] != "]":
            items.append(self.value())
            self.skip_newlines()
            if self.peek()[0] != ",":
                break
            self.i += 1
            self.skip_newlines()
        self.take("]")
        return items


def parse(text: str) -> Settings:
    """The file's settings, each key's last value; XlCfgError when xl would not read it."""
    return _Parser(text).settings()


def same_uuid(value: Value | None, domain_id: str) -> bool:
    """Whether a config's `uuid` names the domain (any spelling `uuid.UUID` reads: case, braces,
    with or without dashes)."""
    if not isinstance(value, str):
        return False
    try:
        return uuid.UUID(value.strip()) == uuid.UUID(domain_id)
    except ValueError:
        return False


@dataclass(frozen=True)
class Found:
    """The config of a domain in a directory, or None; and the files that could not be read."""

    path: Path | None
    settings: Settings = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def candidates(directory: Path) -> list[Path]:
    """`DIR/*.cfg`, then `DIR/auto/*` (xendomains starts every file there, often links to the
    former), each file once."""
    seen: set[Path] = set()
    out = []
    for path in [*sorted(directory.glob("*.cfg")), *sorted((directory / "auto").glob("*"))]:
        try:
            real = path.resolve()
        except OSError:
            continue
        if real not in seen and path.is_file():
            seen.add(real)
            out.append(path)
    return out


def find_config(directory: Path, domain_id: str) -> Found:
    """The first candidate whose `uuid` is the domain's; files that cannot be read or parsed
    are skipped (xl could not create from them either) and named."""
    skipped = []
    for path in candidates(directory):
        try:
            if path.stat().st_size > MAX_CONFIG_BYTES:
                raise XlCfgError(f"larger than {MAX_CONFIG_BYTES} bytes")
            settings = parse(path.read_text())
        except (OSError, UnicodeDecodeError, XlCfgError) as exc:
            skipped.append(f"{path.name}: {getattr(exc, 'strerror', None) or exc}")
            continue
        if same_uuid(settings.get("uuid"), domain_id):
            return Found(path, settings, skipped)
    return Found(None, {}, skipped)


def vnuma_with_pnodes(settings: Settings, pnodes: Sequence[int | None]) -> list[list[str]] | None:
    """The config's vnode specs with vnode v's `pnode=` set to `pnodes[v]` (None keeps the
    file's); None when the config has no `vnuma`. XlCfgError when the specs are not a list of
    lists of strings or are not one per vnode."""
    vnuma = settings.get("vnuma")
    if vnuma is None:
        return None
    specs = vnuma if isinstance(vnuma, list) else []
    if not specs or not all(_is_spec(s) for s in specs):
        raise XlCfgError('vnuma is not a list of vnode specs ([["pnode=0", "size=...", ...], ...])')
    if len(specs) != len(pnodes):
        raise XlCfgError(
            f"vnuma has {len(specs)} vnode spec(s) but the domain has {len(pnodes)} vnode(s)"
        )
    return [_with_pnode([str(o) for o in spec], p) for spec, p in zip(specs, pnodes, strict=True)]


def _is_spec(value: Value) -> bool:
    return isinstance(value, list) and all(isinstance(o, str) for o in value)


def _with_pnode(spec: list[str], pnode: int | None) -> list[str]:
    if pnode is None:
        return spec
    keys = [o.split("=", 1)[0].strip() for o in spec]
    if "pnode" not in keys:
        return [f"pnode={pnode}", *spec]
    return [f"pnode={pnode}" if k == "pnode" else o for k, o in zip(keys, spec, strict=True)]


def quote(text: str) -> str:
    """A string in xl.cfg syntax: double-quoted, with backslash escapes."""
    return '"' + "".join(_ESCAPE.get(c, c) for c in text) + '"'


def vnuma_setting(specs: list[list[str]]) -> str:
    """`vnuma=[[...], ...]`: one `KEY=VALUE` argument of `xl create`."""
    return "vnuma=[" + ", ".join("[" + ", ".join(map(quote, s)) + "]" for s in specs) + "]"
