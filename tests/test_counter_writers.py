"""No side doors into the write path (#23 item 3): only `service/db/apply.py` writes a pnode's
counters (`allocated_mib`, `claimed_mib`, `load_vcpus`) and its agent's `observed_free_mib`.

Read from the source, not from a run: an AST walk over `service/` finds every assignment of one
of those attributes (`x.claimed_mib = ...`, `+=`, annotated), every `setattr` or
`set_committed_value` naming one, and every keyword naming one in a statement's `.values(...)`
or a `Pnode(...)`. On the tree before the change set gained claims and observations it found 9
(core/migrations.py 4, core/agent_report.py 1, core/agents.py 1, db/report_view.py 1,
core/hosts.py 2).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COUNTERS = frozenset({"allocated_mib", "claimed_mib", "load_vcpus", "observed_free_mib"})
THE_WRITER = Path("service/db/apply.py")
_SETTERS = frozenset({"setattr", "set_committed_value"})
_ROW_BUILDERS = frozenset({"values", "Pnode"})


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def writes(source: str) -> list[tuple[int, str]]:
    """(line, attribute) of every write of a counter in one module's source."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            elts = target.elts if isinstance(target, ast.Tuple | ast.List) else [target]
            found += [
                (node.lineno, t.attr)
                for t in elts
                if isinstance(t, ast.Attribute) and t.attr in COUNTERS
            ]
        if isinstance(node, ast.Call):
            name = _name(node.func)
            if name in _SETTERS and len(node.args) >= 2:
                attr = node.args[1]
                if isinstance(attr, ast.Constant) and attr.value in COUNTERS:
                    found.append((node.lineno, str(attr.value)))
            if name in _ROW_BUILDERS:
                found += [(node.lineno, k.arg) for k in node.keywords if k.arg in COUNTERS]
    return found


def writers(root: Path) -> dict[str, list[tuple[int, str]]]:
    """Every module under `root/service` but the one writer, with the counters it writes."""
    out: dict[str, list[tuple[int, str]]] = {}
    for path in sorted((root / "service").rglob("*.py")):
        rel = path.relative_to(root)
        if rel == THE_WRITER:
            continue
        found = writes(path.read_text())
        if found:
            out[str(rel)] = found
    return out


def test_only_apply_writes_the_counters_and_the_observations() -> None:
    assert writers(ROOT) == {}


def test_the_writer_is_where_the_check_looks() -> None:
    assert {attr for _, attr in writes((ROOT / THE_WRITER).read_text())} == COUNTERS


def test_every_kind_of_write_is_found() -> None:
    source = """
state.claimed_mib = fresh
state.claimed_mib += plan
a, pn.load_vcpus = 1, 2
x.allocated_mib: int = 0
setattr(pn, "observed_free_mib", 5)
set_committed_value(pn, "claimed_mib", 3)
update(PNODES).values(observed_free_mib=bindparam("b"))
Pnode(index=0, allocated_mib=0)
reading = pn.claimed_mib + state.allocated_mib()
PnodeOut(allocated_mib=1)
"""
    assert writes(source) == [
        (2, "claimed_mib"),
        (3, "claimed_mib"),
        (4, "load_vcpus"),
        (5, "allocated_mib"),
        (6, "observed_free_mib"),
        (7, "claimed_mib"),
        (8, "observed_free_mib"),
        (9, "allocated_mib"),
    ]
