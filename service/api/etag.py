"""ETag / If-Match over the `version` column."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header

from service.api.problems import PreconditionFailed

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=128,
        description='The ETag last read, e.g. "3"; the write fails with 412 if it changed',
    ),
]


def etag(version: int) -> str:
    return f'"{version}"'


def check_if_match(if_match: str | None, version: int) -> None:
    if if_match is None:
        return
    candidates = [c.strip() for c in if_match.split(",")]
    if "*" in candidates:
        return
    # If-Match uses the strong comparison (RFC 9110 13.1.1): a weak tag W/"3" never matches.
    if etag(version) not in candidates:
        raise PreconditionFailed(
            f"If-Match {if_match} does not match the current ETag {etag(version)}",
            current_etag=etag(version),
        )
