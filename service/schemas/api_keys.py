"""Named API keys: who may use the toolstack API, with which role, until when."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field

from service.schemas.common import Id, example, strict_example

Role = Literal["admin", "operator", "scheduler", "enroll", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "operator", "scheduler", "enroll", "viewer")

# ASCII only: the name is the audit log's actor (`key:<name>`) and a metrics label, so it must
# read the same everywhere and leave no room for look-alike characters.
KeyName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="1-64 characters: letters, digits, '.', '_', '-' (starting with a letter "
        "or digit); the audit log names the key `key:<name>`",
        examples=["orchestrator"],
    ),
]


class ApiKeyCreate(BaseModel):
    model_config = strict_example(
        {"name": "orchestrator", "role": "scheduler", "expires_at": "2027-06-01T00:00:00Z"}
    )

    name: KeyName
    role: Role
    expires_at: AwareDatetime | None = Field(
        default=None, description="When the key stops working (with a time zone); none: never"
    )


class ApiKeyOut(BaseModel):
    model_config = example(
        {
            "id": "6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70",
            "name": "orchestrator",
            "role": "scheduler",
            "created_at": "2026-12-01T08:00:00Z",
            "created_by": "admin",
            "expires_at": None,
            "revoked_at": None,
            "rotated_at": None,
        }
    )

    id: Id
    name: str
    role: Role
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    secret: str = Field(
        description="The bearer secret (`nbk_...`): shown only in this response; the service "
        "keeps its SHA-256 digest"
    )
