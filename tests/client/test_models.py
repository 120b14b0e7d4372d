"""The client's models are generated from openapi/openapi.json: they must not drift from it."""

from __future__ import annotations

from numa_balloon_client._codegen import MODELS, OPENAPI, generate


def test_models_match_the_openapi_document() -> None:
    assert MODELS.read_text() == generate(OPENAPI), "run `make client` and commit the result"


def test_the_client_never_imports_the_service() -> None:
    """Belt and braces next to the import-linter contract: no `service` in the client's source."""
    for path in MODELS.parent.glob("*.py"):
        text = path.read_text()
        assert "from service" not in text and "import service" not in text, path
