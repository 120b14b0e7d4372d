"""`numa-balloon keys create|list|get|revoke|rotate` (the API keys of branch i15)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from numa_balloon_cli.output import emit, fields, out, table
from numa_balloon_cli.state import state

app = typer.Typer(no_args_is_help=True)

Role = Literal["admin", "operator", "scheduler", "enroll", "viewer"]
KeyArg = Annotated[str, typer.Argument(help="API key id")]


def _show(key: dict[str, Any]) -> None:
    fields(
        [(k, key.get(k)) for k in ("id", "name", "role", "created_at", "expires_at", "revoked_at")]
    )
    if key.get("secret"):
        out.print(f"secret (shown once): {key['secret']}")


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="What the key is for; events name it key:<name>")],
    role: Annotated[Role, typer.Option(help="What the key may do")],
    expires_at: Annotated[str | None, typer.Option(help="ISO 8601, e.g. 2027-01-01T00:00:00Z")] = (
        None
    ),
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
    rows = [
        (k.get("name"), k.get("id"), k.get("role"), k.get("expires_at"), k.get("revoked_at"))
        for k in items
    ]
    emit(st.output, items, lambda: table(None, ["NAME", "ID", "ROLE", "EXPIRES", "REVOKED"], rows))


@app.command("get")
def get(ctx: typer.Context, key_id: KeyArg) -> None:
    """One API key."""
    st = state(ctx)
    key = st.nb.get_api_key(key_id)
    emit(st.output, key, lambda: _show(key))


@app.command("revoke")
def revoke(ctx: typer.Context, key_id: KeyArg) -> None:
    """Revoke an API key at once."""
    st = state(ctx)
    st.nb.revoke_api_key(key_id)
    emit(st.output, {"revoked": key_id}, lambda: out.print(f"key {key_id} revoked"))


@app.command("rotate")
def rotate(ctx: typer.Context, key_id: KeyArg) -> None:
    """A new secret for the key (the old one stops working); shown once."""
    st = state(ctx)
    key = st.nb.rotate_api_key(key_id)
    emit(st.output, key, lambda: _show(key))
