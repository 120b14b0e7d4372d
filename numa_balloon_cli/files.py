"""Request bodies from files: JSON or YAML, `-` for stdin."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from numa_balloon_client import NumaBalloonError


class BadFile(NumaBalloonError):
    """The file cannot be read or is neither JSON nor YAML (a usage error)."""


def load_body(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise BadFile(f"{path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise BadFile(f"{path} is neither JSON nor YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise BadFile(f"{path} must hold one object (a request body)")
    return data


def parse_labels(values: list[str] | None) -> list[str] | None:
    """`--label k=v` values, checked for the `=`."""
    if not values:
        return None
    for v in values:
        if "=" not in v:
            raise BadFile(f"--label {v!r}: expected key=value")
    return values
