"""openapi/openapi.json is what the app serves; `make openapi` regenerates it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from service.app import create_app
from service.settings import Settings

COMMITTED = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"


def _schema() -> dict[str, Any]:
    app = create_app(Settings(database_url="sqlite://"))
    schema: dict[str, Any] = app.openapi()
    app.state.engine.dispose()
    return schema


def test_committed_openapi_matches_the_app() -> None:
    served = json.loads(json.dumps(_schema(), sort_keys=True))
    committed = json.loads(COMMITTED.read_text())
    assert served == committed, "openapi/openapi.json is stale: run `make openapi` and commit it"


def test_every_schema_has_an_example_or_is_a_leaf() -> None:
    """Swagger UI is usable by a newcomer only if request bodies come with examples."""
    schema = _schema()
    for path, item in schema["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody")
            if body is None:
                continue
            body_schema = body["content"]["application/json"]["schema"]
            # An optional body (`Model | None`) is an anyOf with the model's $ref in it.
            refs = [body_schema, *body_schema.get("anyOf", [])]
            ref = next(r["$ref"] for r in refs if "$ref" in r)
            name = ref.rsplit("/", 1)[-1]
            component = schema["components"]["schemas"][name]
            assert component.get("examples"), f"{method.upper()} {path}: {name} has no example"


def test_every_operation_documents_its_problems() -> None:
    schema = _schema()
    for path, item in schema["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in item.items():
            assert "401" in op["responses"], f"{method.upper()} {path} does not document 401"
            assert "problem" in json.dumps(op["responses"]["401"]), path
