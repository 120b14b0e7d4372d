"""One transaction boundary: routers hold no SQL, no session and no transaction.

Read from the source (no database): every module of `service.api` is checked for calls that run
statements or end transactions, SQL constructors and imports of `sqlalchemy` beyond its error
types (and, in the helpers that hand work to the unit of work, the `Session` type); the routers
(modules that define `router = APIRouter(...)`) must not name a session at all, must reach the
thread pool only through `service.api.deps`, and are all `async def`: one style, one hop.
The import contract (`make lint`) keeps `service.api` from importing `service.db`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

API = Path(__file__).resolve().parents[1] / "service" / "api"

# Calls on a session (or connection) that run a statement or end a transaction.
SESSION_CALLS = frozenset(
    {
        "commit",
        "rollback",
        "flush",
        "begin",
        "begin_nested",
        "execute",
        "scalar",
        "scalars",
        "add_all",
        "merge",
        "refresh",
        "expire_all",
    }
)
SQL_CONSTRUCTORS = frozenset({"select", "update", "delete", "insert", "text", "exists"})
# What of sqlalchemy an API module may import: its errors (mapped to problems), and in the
# helpers that hand a core operation to the unit of work, the Session type they annotate with.
ALLOWED_SQLALCHEMY = {
    "sqlalchemy.exc": None,
    "sqlalchemy.orm.exc": None,
    "sqlalchemy.orm": frozenset({"Session"}),
}
SESSION_NAMES = frozenset({"Session", "sessionmaker", "SessionDep", "session_scope"})
ROUTE_VERBS = frozenset({"get", "post", "put", "patch", "delete", "head", "options", "api_route"})


def _is_router_module(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            named = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if named == "APIRouter" and any(
                isinstance(t, ast.Name) and t.id == "router" for t in node.targets
            ):
                return True
    return False


def _import_problems(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [
            f"imports {a.name}"
            for a in node.names
            if a.name.split(".")[0] == "sqlalchemy" or a.name.startswith("service.db")
        ]
    module = node.module or ""
    if module == "service.db" or module.startswith("service.db."):
        return [f"imports {module}"]
    if module.split(".")[0] != "sqlalchemy":
        return []
    if module not in ALLOWED_SQLALCHEMY:
        return [f"imports {module}"]
    allowed = ALLOWED_SQLALCHEMY[module]
    return [
        f"imports {module}.{a.name}"
        for a in node.names
        if allowed is not None and a.name not in allowed
    ]


def _route_verb(decorator: ast.expr) -> str | None:
    if not isinstance(decorator, ast.Call) or not isinstance(decorator.func, ast.Attribute):
        return None
    target = decorator.func.value
    if isinstance(target, ast.Name) and target.id == "router":
        verb = decorator.func.attr
        return verb if verb in ROUTE_VERBS else None
    return None


def violations(source: str) -> list[str]:
    """What in one API module crosses the transaction boundary, one line each."""
    tree = ast.parse(source)
    router = _is_router_module(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            found += [f"line {line}: {p}" for p in _import_problems(node)]
            if router:
                names = {a.asname or a.name for a in node.names}
                found += [f"line {line}: imports {n}" for n in sorted(names & SESSION_NAMES)]
                if "run_in_threadpool" in names:
                    found.append(f"line {line}: hops to the thread pool itself")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in SESSION_CALLS:
                found.append(f"line {line}: calls .{func.attr}()")
            if isinstance(func, ast.Name) and func.id in SQL_CONSTRUCTORS:
                found.append(f"line {line}: builds SQL with {func.id}()")
        elif router and isinstance(node, ast.Name) and node.id in SESSION_NAMES:
            found.append(f"line {line}: names {node.id}")
        elif router and isinstance(node, ast.FunctionDef):
            verbs = [v for v in map(_route_verb, node.decorator_list) if v is not None]
            if verbs:
                found.append(f"line {line}: route {node.name} is a plain def, not async def")
    return found


def _modules() -> list[Path]:
    return sorted(API.glob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_api_modules_hold_no_sql_session_or_transaction(path: Path) -> None:
    assert violations(path.read_text()) == [], path.name


def test_every_router_module_is_checked_as_a_router() -> None:
    routers = {p.name for p in _modules() if _is_router_module(ast.parse(p.read_text()))}
    assert {"domains.py", "hosts.py", "guest.py", "ui.py", "ops.py"} <= routers


def test_the_check_sees_what_it_forbids() -> None:
    """The check itself, on a router written the way these were before the boundary."""
    bad = """
from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from service.db.models import Token
from service.db.tokens import issue_token

router = APIRouter()

@router.post("/x")
def create(session: Session) -> None:
    session.execute(select(Token))
    issue_token(session, "guest", "d")
    session.commit()
"""
    found = "\n".join(violations(bad))
    for expected in (
        "imports sqlalchemy",
        "imports Session",
        "hops to the thread pool itself",
        "imports service.db.models",
        "imports service.db.tokens",
        "names Session",
        "calls .execute()",
        "builds SQL with select()",
        "calls .commit()",
        "route create is a plain def",
    ):
        assert expected in found, (expected, found)
    # A helper (no router) may annotate with Session, and every module may map sqlalchemy's
    # errors; nothing else of sqlalchemy passes.
    helper = "from sqlalchemy.orm import Session\nfrom sqlalchemy.exc import SQLAlchemyError\n"
    assert violations(helper) == []
    assert violations("from sqlalchemy.orm import selectinload\n") == [
        "line 1: imports sqlalchemy.orm.selectinload"
    ]
