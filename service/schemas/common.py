"""Shared schema pieces: strict integer types, names, pages and the problem body."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# 2**31 MiB is 2 PiB: beyond any machine, and products of two MiB figures stay inside int64.
MAX_MIB = 1 << 31

MiB = Annotated[int, Field(strict=True, ge=0, le=MAX_MIB)]
PositiveMiB = Annotated[int, Field(strict=True, ge=1, le=MAX_MIB)]
# Categories a name may not hold: controls (Cc), format characters such as RTL overrides and
# zero-width joiners (Cf), lone surrogates (Cs), private use (Co) and unassigned code points (Cn).
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def normalize_name(value: str) -> str:
    """NFC form of a name, refused when blank or holding characters that hide what it says.

    Two names that render the same must not be two resources: names are stored normalized, and
    the unique constraint then holds on the normalized form.
    """
    value = unicodedata.normalize("NFC", value)
    if not value.strip():
        raise ValueError("a name may not be blank")
    if len(value) > 255:
        raise ValueError("a name is at most 255 characters (after NFC normalization)")
    for ch in value:
        if ch == "/" or unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
            raise ValueError(f"character U+{ord(ch):04X} is not allowed in a name")
    return value


Name = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        description=(
            "1-255 characters, stored in Unicode NFC form; no '/', control, format (e.g. RTL "
            "override, zero-width), surrogate, private-use or unassigned characters; not blank"
        ),
    ),
    AfterValidator(normalize_name),
]
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# Ids in responses: plain strings (the client's generated models keep them so).
Id = Annotated[str, Field(description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"])]
# Ids in request bodies: a malformed one is a located 422, not a 404 for something that can't be.
IdIn = Annotated[
    str,
    Field(
        pattern=UUID_PATTERN,
        description="UUID",
        examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"],
    ),
]
MAX_LABELS = 64
LABEL_KEY_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,126}[A-Za-z0-9])?$"
LabelKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=LABEL_KEY_PATTERN,
        description="Letters, digits, '.', '_', '-', '/'; starts and ends with a letter or digit",
    ),
]
LabelValue = Annotated[
    str, Field(max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$", description="No control characters")
]
Labels = Annotated[
    dict[LabelKey, LabelValue],
    Field(
        max_length=MAX_LABELS,
        description="The orchestrator's own labels, string to string, at most 64 pairs; "
        "filter lists with ?label=key=value",
        examples=[{"rack": "r12", "pool": "gold"}],
    ),
]
ExternalId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="The orchestrator's own id (a Nova UUID, a Kubernetes node name); unique",
        examples=["compute-07.rack12"],
    ),
]


class StrictModel(BaseModel):
    """Request bodies refuse unknown fields, so a misspelt field is a 422, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        default=None, description="Pass as ?cursor= to get the next page; null on the last page"
    )


# Located errors a problem lists at most; how many more there were is `errors_omitted`.
MAX_LISTED_ERRORS = 50


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "/problems/infeasible",
                    "title": "Not enough memory to do that",
                    "status": 409,
                    "detail": "pnode 1 has 2048 MiB free, 4096 MiB needed",
                    "instance": "/v1/domains",
                    "max_feasible_mib": 2048,
                }
            ]
        },
    )

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[ValidationIssue] | None = Field(
        default=None,
        description=f"Where the input is wrong: at most the first {MAX_LISTED_ERRORS} located "
        "errors (see errors_omitted)",
    )
    errors_omitted: int | None = Field(
        default=None,
        description="How many more located errors there were beyond those listed in errors "
        "(at least 1); absent when errors lists them all",
    )
    max_feasible_mib: int | None = None


def example(value: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [value]})


def strict_example(value: dict[str, Any]) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [value]})
