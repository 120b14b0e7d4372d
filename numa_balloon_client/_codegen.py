"""Regenerates `numa_balloon_client/models.py` from `openapi/openapi.json` (`make client`).

The models are generated, never edited by hand, so the client cannot drift from what the service
publishes: `tests/client/test_models.py` regenerates them and fails when the committed file
differs. Needs the dev tools (datamodel-code-generator, ruff); the installed client does not.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OPENAPI = ROOT / "openapi" / "openapi.json"
MODELS = Path(__file__).resolve().parent / "models.py"
HEADER = "The API's pydantic models, generated from openapi/openapi.json"

CODEGEN_ARGS = [
    "--input-file-type", "openapi",
    "--output-model-type", "pydantic_v2.BaseModel",
    "--target-python-version", "3.11",
    "--use-standard-collections", "--use-union-operator", "--use-annotated",
    "--enum-field-as-literal", "all", "--use-double-quotes", "--use-schema-description",
    "--disable-timestamp", "--strict-refs", "--no-formatters", "--extra-fields", "allow",
    "--collapse-root-models",
    "--custom-file-header", f'"""{HEADER} (`make client`); do not edit."""',
]  # fmt: skip


def _tool(name: str) -> str:
    """The tool next to this interpreter (the venv's), so `make` and tests use the same one."""
    return str(Path(sys.executable).with_name(name))


def generate(openapi: Path = OPENAPI) -> str:
    """The models module's text for `openapi`, formatted by the project's ruff settings."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "models.py"
        subprocess.run(
            [
                _tool("datamodel-codegen"),
                "--input",
                str(openapi),
                "--output",
                str(out),
                *CODEGEN_ARGS,
            ],
            check=True,
            capture_output=True,
        )
        text = out.read_text()
    stdin = ["--stdin-filename", str(MODELS.relative_to(ROOT))]
    for cmd in (["check", "--fix-only", "--exit-zero", "--quiet"], ["format"]):
        text = subprocess.run(
            [_tool("ruff"), *cmd, *stdin, "-"],
            input=text,
            text=True,
            check=True,
            capture_output=True,
            cwd=ROOT,
        ).stdout
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when models.py is stale")
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        if MODELS.read_text() != text:
            print(f"{MODELS} is stale: run `make client`", file=sys.stderr)
            return 1
        return 0
    MODELS.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
