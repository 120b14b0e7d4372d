"""The OpenAPI document teaches: sentences for summaries, a description per operation, and each
error status with an example of its own (not one 409 shown for every status)."""

from __future__ import annotations

from tests.test_openapi import _schema


def _operations() -> list[tuple[str, str, dict[str, object]]]:
    schema = _schema()
    return [(m.upper(), p, op) for p, item in schema["paths"].items() for m, op in item.items()]


def test_every_operation_has_a_sentence_and_a_description() -> None:
    for method, path, op in _operations():
        summary = str(op.get("summary", ""))
        assert summary.endswith("."), f"{method} {path}: summary is not a sentence: {summary!r}"
        generated = " ".join(w.capitalize() for w in str(op["operationId"]).split("_"))
        assert summary.rstrip(".") != generated, f"{method} {path}: generated summary"
        assert len(str(op.get("description", ""))) >= 20, f"{method} {path}: no description"
        if path.startswith("/v1/"):
            assert "token" in str(op["description"]), f"{method} {path}: does not say who calls"


def test_each_error_status_shows_its_own_example() -> None:
    seen = 0
    for method, path, op in _operations():
        responses = op["responses"]
        assert isinstance(responses, dict)
        for status, response in responses.items():
            content = response.get("content", {}).get("application/problem+json")
            if content is None:
                continue
            example = content["example"]
            assert example["status"] == int(status), f"{method} {path} {status}: {example}"
            seen += 1
    assert seen > 100
