"""Server-side commands: `migrate`, `openapi`, `admin-token` (the Makefile and the Dockerfile run
`python -m service.cli ...`; the `numa-balloon` command is the HTTP client in numa_balloon_cli)."""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

from service.db.alembic import ROOT, upgrade
from service.settings import Settings


def _migrate(settings: Settings) -> None:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    print(f"database migrated: {url.render_as_string(hide_password=True)}")


def _openapi(path: str | None) -> None:
    from service.app import create_app

    text = json.dumps(create_app(Settings()).openapi(), indent=2, sort_keys=True) + "\n"
    if path is None:
        sys.stdout.write(text)
    else:
        Path(path).write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="run the Alembic migrations on NUMA_BALLOON_DATABASE_URL")
    out = sub.add_parser("openapi", help="write the OpenAPI document")
    out.add_argument("--output", "-o")
    sub.add_parser(
        "admin-token",
        help="print NUMA_BALLOON_ADMIN_TOKEN, or the one kept in var/admin-token (made once)",
    )
    args = parser.parse_args(argv)
    if args.command == "migrate":
        _migrate(Settings())
    elif args.command == "openapi":
        _openapi(args.output)
    else:
        print(_admin_token())
    return 0


def _admin_token() -> str:
    """A stable local token: generated on first `make run`, kept (mode 600) for later runs."""
    settings = Settings()
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value()
    path = ROOT / "var" / "admin-token"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token


if __name__ == "__main__":
    raise SystemExit(main())
