"""Engine validation issues as RFC 9457 `errors` entries located in the request body."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from service.engine.errors import Issue


def issues_to_errors(
    issues: Iterable[Issue], prefix: tuple[str | int, ...] = ("body",)
) -> list[dict[str, Any]]:
    return [{"loc": [*prefix, *issue.loc], "msg": issue.msg} for issue in issues]
