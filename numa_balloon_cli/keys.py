"""`numa-balloon keys create|list|get|revoke|rotate`: the API keys, by name, id or id prefix."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from numa_balloon_cli import complete, resolve
from numa_balloon_cli.output import emit, fields, out, table, when
from numa_balloon_cli.state import state
from numa_balloon_client import models as m

app = typer.Typer(no_args_is_help=True)

Role = Literal["admin", "operator", "scheduler", "enroll", "viewer"]
KeyArg = Annotated[
    str,
    typer.Argument(
        metavar="KEY", help="API key name, id or id prefix", autocompletion=complete.keys
    ),
]


def _show(key: m.ApiKeyOut | m.ApiKeyCreated) -> None:
    fields(
        [
            ("name", key.name),
            ("id", key.id),
            ("role", key.role),
            ("created", f"{when(key.created_at)} by {key.created_by}"),
            ("expires", when(key.expires_at)),
            ("rotated", when(key.rotated_at)),
            ("revoked", when(key.revoked_at)),
        ]
    )
    if isinstance(key, m.ApiKeyCreated):
        out.print(f"secret (shown once): {key.secret}")


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="What the key is for; events name it key:<name>")
    ],
    role: Annotated[
        Role,
        typer.Option(
            metavar="ROLE", help="What the key may do: admin, operator, scheduler, enroll, viewer"
        ),
    ],
    expires_at: Annotated[
        str | None, typer.Option(metavar="WHEN", help="ISO 8601, e.g. 2027-01-01T00:00:00Z")
    ] = None,
) -> None:
    """Create an API key; its secret is shown once."""
    st = state(ctx)
    key = st.nb.create_api_key(name, role, expires_at=expires_at)
    emit(st.output, key, lambda: _show(key))


@app.command("list")
def list_keys(ctx: typer.Context) -> None:
    """Every API key (never their secrets)."""
    st = state(ctx)
    items = list(st.nb.iter_api_keys())
    rows = [(k.name, k.id, k.role, when(k.expires_at), when(k.revoked_at)) for k in items]
    emit(st.output, items, lambda: table(None, ["NAME", "ID", "ROLE", "EXPIRES", "REVOKED"], rows))


@app.command("get")
def get(ctx: typer.Context, key: KeyArg) -> None:
    """One API key."""
    st = state(ctx)
    found = resolve.key(st.nb, key)
    emit(st.output, found, lambda: _show(found))


@app.command("revoke")
def revoke(ctx: typer.Context, key: KeyArg) -> None:
    """Revoke an API key at once."""
    st = state(ctx)
    found = resolve.key(st.nb, key)
    st.nb.revoke_api_key(found.id)
    emit(st.output, {"revoked": found.id}, lambda: out.print(f"key {found.name} revoked"))


@app.command("rotate")
def rotate(ctx: typer.Context, key: KeyArg) -> None:
    """A new secret for the key (the old one stops working); shown once."""
    st = state(ctx)
    rotated = st.nb.rotate_api_key(resolve.key(st.nb, key).id)
    emit(st.output, rotated, lambda: _show(rotated))
