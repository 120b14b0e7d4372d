"""A typed HTTP client for numa-balloon (sync and async) that knows the API's habits.

Bearer token; an Idempotency-Key per create, reused on its retries; iterators over paged lists;
If-Match from the last ETag seen (`if_match=True`); bounded retries with backoff and jitter on
503 and connection errors (never on 4xx); problem+json raised as typed exceptions; waiting on
the events long-poll. It speaks HTTP only and never imports the service.
"""

from numa_balloon_client import models, ops
from numa_balloon_client._core import Call, Page, RetryPolicy, with_status
from numa_balloon_client._wait import TERMINAL, StepFailed, WaitTimeout, pending_steps, progress
from numa_balloon_client.aio import AsyncClient
from numa_balloon_client.client import Client
from numa_balloon_client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    InvalidInput,
    Issue,
    NotFound,
    NumaBalloonError,
    PreconditionFailed,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
)
from numa_balloon_client.sysfs import SysfsError, host_from_sysfs

__all__ = [
    "TERMINAL",
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "Call",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "InvalidInput",
    "Issue",
    "NotFound",
    "NumaBalloonError",
    "Page",
    "PreconditionFailed",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "StepFailed",
    "SysfsError",
    "Unauthorized",
    "WaitTimeout",
    "host_from_sysfs",
    "models",
    "ops",
    "pending_steps",
    "progress",
    "with_status",
]
