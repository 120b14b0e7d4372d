"""Responses serialized straight from a schema model.

A route that returns a `Response` skips FastAPI's second validation of its own output (on a
`def` route that validation is one more hop to the thread pool); the model was validated when
it was built, and `response_model` on the route still documents it.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Response
from pydantic import BaseModel


def model_response(
    model: BaseModel, headers: Mapping[str, str] | None = None, status_code: int = 200
) -> Response:
    return Response(
        model.model_dump_json(by_alias=True),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )
