"""What the sync and async clients share: calls as data, retries, ETags, pages.

An operation is described once as a `Call` (method, path, body, how to parse the answer, whether
it creates, which resource's ETag it reads or writes); `Client` and `AsyncClient` only differ in
how they send it. Keeping the habits here means both clients retry, key and match identically.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from numa_balloon_client.errors import NumaBalloonError, error_from_response

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
M = TypeVar("M", bound=BaseModel)

#: Methods a repeat cannot make happen twice; a POST is safe only with an Idempotency-Key.
SAFE_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: `next_cursor` is None on the last one."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class Call(Generic[T_co]):
    """One HTTP operation, described without sending it."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T_co]
    params: tuple[tuple[str, str], ...] = ()
    body: Any = None
    create: bool = False
    idempotency_key: str | None = None
    resource: str | None = None  # whose ETag this call reads (GET) or writes (PUT/PATCH/DELETE)
    if_match: bool | str | None = None
    timeout_s: float | None = None  # long-polls wait longer than the client's default
    idempotent: bool = False  # a POST the server answers the same way when repeated (acks)

    @property
    def retry_safe(self) -> bool:
        """Whether a repeat after a lost answer is harmless (an idempotent method or a key)."""
        return self.method in SAFE_METHODS or self.idempotency_key is not None or self.idempotent


@dataclass
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter, on 503 and transport errors.

    4xx are never retried: the same request would get the same refusal. A request that may have
    reached the server (read timeout, reset after sending) is repeated only when `retry_safe`.
    """

    attempts: int = 4
    base_s: float = 0.1
    cap_s: float = 3.0
    rng: random.Random = field(default_factory=random.Random)

    def delay_s(self, attempt: int, retry_after: str | None = None) -> float:
        """Sleep before attempt `attempt + 1` (0-based): Retry-After when given, capped."""
        if retry_after is not None:
            try:
                return min(self.cap_s, max(0.0, float(retry_after)))
            except ValueError:
                pass
        return self.rng.uniform(0, min(self.cap_s, self.base_s * 2**attempt))


def unsent(exc: httpx.TransportError) -> bool:
    """The request never left: retrying cannot do anything twice."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def should_retry(call: Call[Any], exc: httpx.TransportError) -> bool:
    return unsent(exc) or call.retry_safe


class ETags:
    """The ETag last seen per resource path, for `if_match=True`."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def header(self, call: Call[Any]) -> str | None:
        if call.if_match is None or call.if_match is False:
            return None
        if isinstance(call.if_match, str):
            return call.if_match
        if call.resource is None or call.resource not in self._seen:
            raise NumaBalloonError(
                f"if_match=True but no ETag was seen for {call.resource}: read it first"
            )
        return self._seen[call.resource]

    def learn(self, call: Call[Any], response: httpx.Response) -> None:
        if call.resource is None:
            return
        if call.method == "DELETE" and response.status_code < 300:
            self._seen.pop(call.resource, None)
        elif (tag := response.headers.get("ETag")) is not None:
            self._seen[call.resource] = tag

    def get(self, resource: str) -> str | None:
        return self._seen.get(resource)


def request_parts(call: Call[Any], etags: ETags) -> dict[str, Any]:
    """Keyword arguments for `httpx.Client.request` (the key is fixed on the Call, so every
    retry of a create carries the same one)."""
    headers: dict[str, str] = {}
    if call.idempotency_key is not None:
        headers["Idempotency-Key"] = call.idempotency_key
    if (tag := etags.header(call)) is not None:
        headers["If-Match"] = tag
    parts: dict[str, Any] = {"headers": headers, "params": list(call.params)}
    if call.body is not None:
        parts["json"] = call.body
    if call.timeout_s is not None:
        parts["timeout"] = call.timeout_s
    return parts


def finish(call: Call[T], response: httpx.Response, etags: ETags) -> T:
    """Raise the typed problem for an error status, else remember the ETag and parse."""
    if response.status_code >= 400:
        raise error_from_response(response)
    etags.learn(call, response)
    return call.parse(response)


def with_status(call: Call[T]) -> Call[tuple[int, T]]:
    """The same call, answering (HTTP status, parsed body): for load tests that count codes."""
    parse = call.parse
    return Call(
        call.method,
        call.path,
        lambda r: (r.status_code, parse(r)),
        call.params,
        call.body,
        call.create,
        call.idempotency_key,
        call.resource,
        call.if_match,
        call.timeout_s,
        call.idempotent,
    )


#: The API's bound on an event seq (a 32-bit column): nothing is ever after it.
MAX_SEQ = (1 << 31) - 1


def head_search() -> Generator[int, int | None, int]:
    """The newest event's seq (0 for an empty log), from reads that each answer "the first seq
    after S, if any" (`GET /v1/events?since=S&limit=1`).

    The log reads only forward, so this gallops (S doubles its distance from the last seq found)
    until nothing is after S, then bisects: about 2·log2(head) reads of one event each. Sans I/O:
    it yields each S to ask about and is sent the answer, so both clients drive the same search.
    """
    first = yield 0
    if first is None:
        return 0
    lo, step = first, 1  # lo: a seq that exists
    while True:
        probe = min(lo + step, MAX_SEQ)
        found = yield probe
        if found is None:
            hi = probe  # nothing is after hi
            break
        lo, step = found, step * 2
    while lo < hi:
        mid = (lo + hi) // 2
        found = yield mid
        if found is None:
            hi = mid
        else:
            lo = found
    return lo


# --- building calls ---------------------------------------------------------------------------


def new_key() -> str:
    return str(uuid.uuid4())


def dump(body: BaseModel | Mapping[str, Any]) -> Any:
    """A request body as JSON data: models without the fields the caller never set."""
    if isinstance(body, BaseModel):
        return body.model_dump(mode="json", exclude_unset=True, by_alias=True)
    return dict(body)


def model(cls: type[M]) -> Callable[[httpx.Response], M]:
    return lambda r: cls.model_validate_json(r.content)


def page_of(cls: type[M]) -> Callable[[httpx.Response], Page[M]]:
    items = TypeAdapter(list[cls])  # type: ignore[valid-type]

    def parse(r: httpx.Response) -> Page[M]:
        data = r.json()
        return Page(items.validate_python(data["items"]), data.get("next_cursor"))

    return parse


def as_json(r: httpx.Response) -> Any:
    return r.json()


def as_text(r: httpx.Response) -> str:
    return r.text


def nothing(_: httpx.Response) -> None:
    return None


def query(**values: object) -> tuple[tuple[str, str], ...]:
    """Query parameters without the unset ones; sequences repeat the key (`?label=a&label=b`)."""
    out: list[tuple[str, str]] = []
    for key, value in values.items():
        if value is None:
            continue
        seq = value if isinstance(value, list | tuple) else [value]
        out.extend((key, str(v).lower() if isinstance(v, bool) else str(v)) for v in seq)
    return tuple(out)


def labels_query(labels: Mapping[str, str] | Sequence[str] | None) -> list[str] | None:
    """`{"rack": "a1"}` or `["rack=a1"]` -> the repeated `label=k=v` values."""
    if labels is None:
        return None
    if isinstance(labels, Mapping):
        return [f"{k}={v}" for k, v in labels.items()]
    return list(labels)
