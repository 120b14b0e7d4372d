"""Runtime settings, read only from the environment (prefix ``NUMA_BALLOON_``)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SQLITE_URL = f"sqlite:///{_REPO_ROOT / 'var' / 'numa-balloon.db'}"
_PLACEHOLDERS = {"changeme", "change-me", "secret", "admin", "token", "password"}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """`10.0.0.5, 10.1.0.0/16, fd00::/8` as networks; ValueError naming a bad entry."""
    out = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an IP address or network ({exc})") from None
    return tuple(out)


class Settings(BaseSettings):
    """Every knob of the service. Units are in the names, as everywhere else."""

    model_config = SettingsConfigDict(env_prefix="NUMA_BALLOON_", extra="ignore")

    database_url: str = DEFAULT_SQLITE_URL
    admin_token: SecretStr | None = None
    default_block_mib: int = Field(default=128, ge=1, le=1 << 20)
    # The lease of a `planned` migration's claims. Past `planned` they are held until it ends.
    claim_ttl_s: float = Field(default=300.0, gt=0)
    # A migration past `planned` with no progress (advance, step acknowledged) for this long is
    # flagged stuck, with an event; it keeps its claims until aborted or resolved.
    stuck_after_s: float = Field(default=300.0, gt=0)
    # How often each replica sweeps expired claims and stuck migrations (0: only on requests).
    sweep_interval_s: float = Field(default=5.0, ge=0)
    inactive_after_s: float = Field(default=5.0, gt=0)
    uncooperative_after_s: float = Field(default=20.0, gt=0)
    idempotency_ttl_s: float = Field(default=24 * 3600.0, gt=0)
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    max_json_depth: int = Field(default=32, ge=4)
    page_limit_default: int = Field(default=50, ge=1)
    page_limit_max: int = Field(default=500, ge=1)
    drift_threshold_mib: int = Field(default=1024, ge=0)
    # How often a process looks for events other replicas wrote while someone long-polls or
    # streams (its own writes wake waiters at once).
    events_poll_s: float = Field(default=0.5, gt=0, le=10)
    # Long-polls (`GET /v1/events?wait=`) and event streams open at once in one worker, and per
    # credential (API key, or the admin token) in one worker; 429 with Retry-After beyond, 0: no
    # limit. Each holds a connection and a little memory; none holds a database session, and an
    # event costs only the waiters it matches.
    events_max_waiters: int = Field(default=1000, ge=0)
    events_max_waiters_per_key: int = Field(default=100, ge=0)
    # Requests holding a database session at once in one worker (0: no limit). More threads
    # than this only fight over the GIL; the rest wait their turn before opening a session.
    db_concurrency: int = Field(default=4, ge=0)
    # /metrics without a token (else a viewer key or better).
    public_metrics: bool = False
    # Requests per second each API key may make (a burst of twice that), per replica; 0: no limit.
    key_rate_per_s: float = Field(default=100.0, ge=0)
    # Failed authentications one source address may make per minute, per replica, before its
    # failing requests get 429 instead of 401 (a valid credential always gets through); 0: no limit.
    failed_auth_per_min: int = Field(default=30, ge=0)
    # The reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed: addresses or
    # networks, comma-separated ("10.0.0.5,fd00::/8"). Empty: the socket peer is the client.
    trusted_proxies: str = ""
    # Signs the /ui session cookie. Unset: derived from the admin token, else random per process
    # (set it when several replicas serve /ui without an admin token).
    ui_session_secret: SecretStr | None = None
    ui_session_ttl_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)

    @field_validator("admin_token")
    @classmethod
    def _refuse_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        # A guessable admin token is worse than none: it opens every toolstack route.
        if value is None:
            return None
        secret = value.get_secret_value()
        if secret.lower() in _PLACEHOLDERS or len(secret) < 16:
            raise ValueError("NUMA_BALLOON_ADMIN_TOKEN must be at least 16 random characters")
        return value

    @field_validator("ui_session_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("NUMA_BALLOON_UI_SESSION_SECRET must be at least 32 random characters")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)  # refuse a typo at start-up rather than trust nothing silently
        return value

    @property
    def trusted_proxy_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.trusted_proxies)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
