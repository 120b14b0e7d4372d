"""The HTTP benchmark's own client: a bare HTTP/1.1 loop must read responses correctly (several
requests per keep-alive connection), count every request, and refuse to report numbers when
requests fail. A benchmark that silently measured 404s would be worse than none."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from bench.http import BadResponse, _make_domain, _make_host, measure, measure_open
from numa_balloon_client import Client
from numa_balloon_testing.server import Server
from tests.conftest import ADMIN_TOKEN, reset_database


@pytest.fixture(scope="module")
def server(sqlite_url: str) -> Iterator[tuple[Server, str]]:
    reset_database(sqlite_url)
    with Server(sqlite_url, admin_token=ADMIN_TOKEN) as srv:
        with Client(srv.url, ADMIN_TOKEN, timeout_s=30) as c:
            domain = _make_domain(c, "bench-client", _make_host(c, "bench-client"))
        yield srv, domain


def _put(domain: str, target_mib: int = 4096) -> bytes:
    body = f'{{"target_mib":{target_mib}}}'
    return (
        f"PUT /v1/domains/{domain}/target HTTP/1.1\r\nHost: t\r\n"
        f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def test_closed_loop_reads_every_response(server: tuple[Server, str]) -> None:
    srv, domain = server
    n, elapsed, lat = asyncio.run(
        measure(srv.port, lambda i, k: _put(domain, 2048 + 128 * (k % 8)), 2, 0.6)
    )
    assert n == len(lat) > 2  # more than one request per connection
    assert all(0 < x <= elapsed for x in lat)
    with Client(srv.url, ADMIN_TOKEN) as c:
        assert c.get_domain(domain).version > n  # every PUT reached the API


def test_failed_requests_abort_the_measurement(server: tuple[Server, str]) -> None:
    srv, _ = server
    missing = _put("00000000-0000-4000-8000-000000000000")
    with pytest.raises(BadResponse, match="404"):
        asyncio.run(measure(srv.port, lambda i, k: missing, 2, 0.3))
    unauthenticated = b"GET /v1/domains HTTP/1.1\r\nHost: t\r\n\r\n"
    with pytest.raises(BadResponse, match="401"):
        asyncio.run(measure_open(srv.port, lambda i, k: unauthenticated, 2, 20, 0.3))


def test_open_loop_sends_at_the_offered_rate(server: tuple[Server, str]) -> None:
    srv, _ = server
    healthz = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    n, elapsed, lat = asyncio.run(measure_open(srv.port, lambda i, k: healthz, 4, 40, 1.0))
    assert n == len(lat) == 40
    # The last arrival is due at 0.975 s: sent on schedule, not as fast as possible. (No upper
    # bound that a busy machine could break: that would time the machine, not the tool.)
    assert elapsed >= 0.95
