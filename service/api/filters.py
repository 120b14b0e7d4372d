"""Query filters shared by the host and domain lists, and the refusal of unknown parameters."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from service.api.problems import InvalidInput
from service.schemas.common import LABEL_KEY_PATTERN, MAX_LABELS

NameQuery = Annotated[str | None, Query(max_length=255, description="Only the one with this name")]
ExternalIdQuery = Annotated[
    str | None, Query(max_length=255, description="Only the one with this external_id")
]
LabelQuery = Annotated[
    list[str] | None,
    Query(
        max_length=MAX_LABELS,
        description="key=value, repeatable; every one must match "
        "(`?label=rack=r12&label=pool=gold`)",
    ),
]
PlacementLimit = Annotated[
    int, Query(ge=1, le=1000, description="Only the best this many hosts (default 10)")
]
_KEY = re.compile(LABEL_KEY_PATTERN)


def parse_labels(values: list[str] | None) -> list[tuple[str, str]]:
    """`key=value` strings as pairs; a malformed one is a 422 located at its position."""
    out, errors = [], []
    for i, raw in enumerate(values or ()):
        key, sep, value = raw.partition("=")
        if not sep or not _KEY.match(key):
            errors.append({"loc": ["query", "label", i], "msg": "expected key=value"})
        else:
            out.append((key, value))
    if errors:
        raise InvalidInput("a label filter is not key=value", errors=errors)
    return out


_ALLOWED_ATTR = "_numa_balloon_query_names"


def _query_names(dependant: Dependant) -> set[str]:
    names = {f.alias for f in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def reject_unknown_query(request: Request) -> None:
    """A misspelt filter (`?hostid=`) must not silently return everything: 422, and say which.

    Installed once for the whole app; the allowed names come from each route's own declared
    query parameters (and its dependencies'), computed once per route."""
    if not request.query_params:
        return
    route: Any = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed: frozenset[str] | None = getattr(route, _ALLOWED_ATTR, None)
    if allowed is None:  # once per route, kept on the route (routes are not hashable)
        allowed = frozenset(_query_names(route.dependant))
        setattr(route, _ALLOWED_ATTR, allowed)
    unknown = sorted({k for k in request.query_params if k not in allowed})
    if unknown:
        raise InvalidInput(
            f"unknown query parameter(s): {', '.join(unknown)}; this route takes "
            f"{', '.join(sorted(allowed)) or 'none'}",
            errors=[{"loc": ["query", k], "msg": "unknown parameter"} for k in unknown],
        )
