"""Typed exceptions: every RFC 9457 problem the service answers, and the service being away.

Scripts catch what they can act on (`NotFound`, `Conflict` with `max_feasible_mib`,
`PreconditionFailed` to re-read and retry) instead of parsing status codes; the CLI maps the
three families to its exit codes (4xx refusal, unavailable, usage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


class NumaBalloonError(Exception):
    """Base of everything this client raises on purpose."""


@dataclass(frozen=True)
class Issue:
    """One located validation error: `loc` is the path into the request (`body.pnodes.1`)."""

    loc: tuple[str | int, ...]
    msg: str

    def __str__(self) -> str:
        return f"{'.'.join(str(p) for p in self.loc)}: {self.msg}"


class ApiError(NumaBalloonError):
    """The service answered with an error status (a problem+json body when it could)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        *,
        type: str = "about:blank",
        errors: list[Issue] | None = None,
        body: dict[str, Any] | None = None,
        method: str = "",
        url: str = "",
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.errors = errors or []
        self.body = body or {}
        self.method = method
        self.url = url
        super().__init__(self.__str__())

    @property
    def max_feasible_mib(self) -> int | None:
        """With a 409 for lack of memory: the largest amount the service could have done."""
        value = self.body.get("max_feasible_mib")
        return value if isinstance(value, int) else None

    def __str__(self) -> str:
        text = f"{self.status} {self.title}"
        if self.detail and self.detail != self.title:
            text += f": {self.detail}"
        return text + "".join(f"\n  {issue}" for issue in self.errors)


class BadRequest(ApiError):
    """400: the request is malformed (e.g. an unknown query parameter)."""


class Unauthorized(ApiError):
    """401: no token, or not a valid one."""


class Forbidden(ApiError):
    """403: a token of the wrong kind (agent, guest, role) for this route."""


class NotFound(ApiError):
    """404: no such id (or, on an older server, no such route)."""


class Conflict(ApiError):
    """409: the state forbids it, or the memory is not there (`max_feasible_mib`)."""


class PreconditionFailed(ApiError):
    """412: `If-Match` named an ETag that is no longer current; re-read and decide again."""


class PayloadTooLarge(ApiError):
    """413: the body is over the service's size limit."""


class UnsupportedMediaType(ApiError):
    """415: the body is not JSON."""


class InvalidInput(ApiError):
    """422: the body or a parameter is invalid; `errors` locates each problem."""


class TooManyRequests(ApiError):
    """429: slow down."""


class ServerError(ApiError):
    """5xx other than 503: a bug on the server side."""


class ServiceUnavailable(ApiError):
    """503 (after the client's retries): the service or its database is away for now."""


class ConnectionFailed(NumaBalloonError):
    """No answer at all (refused, reset, timed out) after the client's retries."""

    def __init__(self, method: str, url: str, cause: httpx.TransportError) -> None:
        self.method = method
        self.url = url
        self.cause = cause
        super().__init__(f"{method} {url}: {type(cause).__name__}: {cause or 'no answer'}")


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: InvalidInput,
    429: TooManyRequests,
    503: ServiceUnavailable,
}


def _issues(raw: object) -> list[Issue]:
    if not isinstance(raw, list):
        return []
    out = []
    for item in raw:
        if isinstance(item, dict):
            loc = item.get("loc") or []
            out.append(
                Issue(
                    tuple(loc) if isinstance(loc, list) else (str(loc),), str(item.get("msg", ""))
                )
            )
    return out


def error_from_response(response: httpx.Response) -> ApiError:
    """The typed exception for an error response, from its problem+json body when it has one."""
    status = response.status_code
    body: dict[str, Any] = {}
    try:
        parsed = response.json()
        if isinstance(parsed, dict):
            body = parsed
    except ValueError:
        pass
    title = str(body.get("title") or response.reason_phrase or "error")
    detail = str(body.get("detail") or ("" if body else response.text[:500]))
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(
        status,
        title,
        detail,
        type=str(body.get("type", "about:blank")),
        errors=_issues(body.get("errors")),
        body=body,
        method=response.request.method,
        url=str(response.request.url),
    )
