"""The client's address and scheme, behind the proxies the operator trusts and no others.

uvicorn runs with `--no-proxy-headers` (the Dockerfile and `make run` do), so `scope["client"]` is
the socket peer. Only when that peer is one of `NUMA_BALLOON_TRUSTED_PROXIES` (addresses or
networks; none by default) is `X-Forwarded-For` read, from the right: each trusted hop vouches for
the entry to its left, so the client is the right-most entry that is not itself a trusted proxy.
Everything left of it was written by the client and is ignored. An entry that is not an IP address
ends the walk at the last hop that is known (the trusted proxy that passed it on).

Without this a client could pick the address the failed-authentication limit counts against:
rotate it to never meet the limit, or name someone else's to lock them out. uvicorn's own
`--forwarded-allow-ips` trusts 127.0.0.1 by default, and with `'*'` takes the left-most entry,
which the client wrote.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from service.settings import Network

# An X-Forwarded-For longer than this is not walked further (each trusted proxy adds one entry).
MAX_HOPS = 16
_SCHEMES = frozenset({"http", "https"})


class TrustedProxies:
    def __init__(self, networks: Sequence[Network]) -> None:
        self.networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str) -> bool:
        if not self.networks:  # the default: no address to parse on every request
            return False
        ip = _ip(address)
        return ip is not None and any(ip in net for net in self.networks)

    def client(self, peer: str, forwarded_for: Iterable[str]) -> str:
        """The right-most address of `peer` and its X-Forwarded-For that no trusted proxy is."""
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
        address = peer
        for hop in reversed(hops[-MAX_HOPS:]):
            if not self.trusts(address):
                break
            ip = _ip(hop)
            if ip is None:
                break
            address = str(ip)
        return address


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_address(scope: Scope) -> str:
    """The client's address as the middleware below settled it (the peer when no proxy is
    trusted); the key of the failed-authentication limit."""
    client: Any = scope.get("client")
    return str(client[0]) if client else "unknown"


class ForwardedHeaders:
    """Rewrites `scope["client"]` (and `scheme`, from `X-Forwarded-Proto`) for requests that
    come through a trusted proxy; leaves every other request as its socket says."""

    def __init__(self, app: ASGIApp, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client: Any = scope.get("client")
        if scope["type"] in ("http", "websocket") and client and self.trusted.trusts(client[0]):
            forwarded_for: list[str] = []
            proto = None
            for name, value in scope.get("headers") or []:
                if name == b"x-forwarded-for":
                    forwarded_for.append(value.decode("latin-1"))
                elif name == b"x-forwarded-proto":
                    proto = value.decode("latin-1").rsplit(",", 1)[-1].strip().lower()
            scope["client"] = (self.trusted.client(client[0], forwarded_for), 0)
            if proto in _SCHEMES and scope["type"] == "http":
                scope["scheme"] = proto
        await self.app(scope, receive, send)
