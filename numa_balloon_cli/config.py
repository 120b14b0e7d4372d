"""Where the CLI finds the service and its token: flags, then the environment, then a profile.

`--url`/`--token` win over `NUMA_BALLOON_URL`/`NUMA_BALLOON_TOKEN`, which win over the profile
(`--profile NAME`, `NUMA_BALLOON_PROFILE`, else `default`) in
`$XDG_CONFIG_HOME/numa-balloon/config.toml` (`~/.config/...`):

    [default]
    url = "http://127.0.0.1:8000"
    token = "..."

    [lab]
    url = "https://nb.lab.example:8443"
    token_file = "~/.config/numa-balloon/lab.token"   # keeps the secret out of this file
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"


class ConfigError(Exception):
    """The configuration file or the profile asked for is unusable (a usage error)."""


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "numa-balloon" / "config.toml"


@dataclass(frozen=True)
class Target:
    url: str
    token: str | None


def _profile(name: str | None) -> dict[str, object]:
    path = config_path()
    explicit = name is not None
    name = name or os.environ.get("NUMA_BALLOON_PROFILE") or "default"
    if not path.exists():
        if explicit:
            raise ConfigError(f"profile {name!r} asked for, but {path} does not exist")
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    section = data.get(name)
    if section is None:
        if explicit or name != "default":
            raise ConfigError(f"{path} has no [{name}] profile")
        return {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [{name}] is not a table")
    return section


def resolve(url: str | None, token: str | None, profile: str | None) -> Target:
    """The service URL and token, by precedence (flag > environment > profile > default)."""
    section = _profile(profile)
    url = url or os.environ.get("NUMA_BALLOON_URL") or _str(section, "url") or DEFAULT_URL
    token = token or os.environ.get("NUMA_BALLOON_TOKEN") or _str(section, "token")
    if token is None and (token_file := _str(section, "token_file")):
        try:
            token = Path(token_file).expanduser().read_text().strip()
        except OSError as exc:
            raise ConfigError(f"token_file {token_file}: {exc.strerror}") from exc
    return Target(url.rstrip("/"), token or None)


def _str(section: dict[str, object], key: str) -> str | None:
    value = section.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"config: {key} must be a string")
    return value
