"""The service's error vocabulary: what went wrong, in the words of the domain, not of HTTP.

Core operations raise these; `service.api.problems` renders them as RFC 9457 problem details. Each
class states its status, its problem type slug and its title once, here, so that a rule written in
`service/core` never needs the web layer to say "not found" or "not enough memory".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from service.engine.errors import Issue

__all__ = [
    "Conflict",
    "Contended",
    "Forbidden",
    "HttpError",
    "Infeasible",
    "Internal",
    "InvalidInput",
    "MethodNotAllowed",
    "NotAcceptable",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PreconditionFailed",
    "ResourceChanged",
    "ServiceError",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
    "WouldBreakFailoverPlan",
    "issues_to_errors",
]


class ServiceError(Exception):
    """An error with a stable problem type; `extra` members are added to the problem body."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors) if errors is not None else None
        self.headers = headers or {}
        self.extra = extra


class Unauthorized(ServiceError):
    status, slug, title = 401, "unauthorized", "Missing or invalid bearer token"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="numa-balloon"'})


class Forbidden(ServiceError):
    status, slug, title = 403, "forbidden", "This token may not use this resource"


class NotFound(ServiceError):
    status, slug, title = 404, "not-found", "No such resource"


class Conflict(ServiceError):
    status, slug, title = 409, "conflict", "The request conflicts with the current state"


class Contended(Conflict):
    """Concurrent requests on the same hosts kept colliding (deadlocks, serialization failures)
    after the retries: nothing changed, and the client may try again."""

    title = "The request conflicts with concurrent requests"

    def __init__(self, detail: str, retry_after_s: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})


class Infeasible(ServiceError):
    status, slug, title = 409, "infeasible", "Not enough memory to do that"


class WouldBreakFailoverPlan(Conflict):
    """With failover protection on, the change would leave a scenario of host failures in which
    some protected domains cannot restart (issue 26); `?ha_overcommit=true` lets it through."""

    slug, title = "would-break-failover-plan", "The change would break the failover plan"


class MethodNotAllowed(ServiceError):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"


class NotAcceptable(ServiceError):
    status, slug, title = 406, "not-acceptable", "Not acceptable"


class PreconditionFailed(ServiceError):
    status, slug, title = 412, "precondition-failed", "If-Match does not match the current version"


class ResourceChanged(PreconditionFailed):
    """Another request modified the row first (its version moved under this one's write)."""

    title = "The resource changed while this request ran"


class PayloadTooLarge(ServiceError):
    status, slug, title = 413, "payload-too-large", "Request body too large"


class UnsupportedMediaType(ServiceError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class InvalidInput(ServiceError):
    status, slug, title = 422, "validation-error", "The request is not valid"


class TooManyRequests(ServiceError):
    status, slug, title = 429, "too-many-requests", "Too many requests; slow down"

    def __init__(self, detail: str, retry_after_s: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})


class ServiceUnavailable(ServiceError):
    status, slug, title = 503, "unavailable", "The database is unavailable; retry later"

    def __init__(self, detail: str, retry_after_s: int = 2) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})


class Overloaded(ServiceUnavailable):
    """No database connection became free in time."""

    title = "The service is overloaded; retry later"

    def __init__(self, detail: str, retry_after_s: int = 1) -> None:
        super().__init__(detail, retry_after_s)


class Internal(ServiceError):
    """Something failed unexpectedly; the body says no more than that (the logs say the rest)."""

    status, slug, title = 500, "internal", "Internal error"


class HttpError(ServiceError):
    """An HTTP status the vocabulary has no word for (raised by the framework, not by us)."""

    status, slug, title = 500, "http-error", "HTTP error"


def issues_to_errors(
    issues: Iterable[Issue], prefix: tuple[str | int, ...] = ("body",)
) -> list[dict[str, Any]]:
    """Engine validation issues as problem `errors` entries located in the request."""
    return [{"loc": [*prefix, *issue.loc], "msg": issue.msg} for issue in issues]
