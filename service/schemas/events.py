"""The audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from service.schemas.common import example


class EventOut(BaseModel):
    model_config = example(
        {
            "seq": 1,
            "at": "2026-11-26T08:00:00Z",
            "actor": "admin",
            "action": "host.created",
            "subject_type": "host",
            "subject_id": "6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70",
            "before": None,
            "after": {"name": "compute-07", "state": "active"},
        }
    )

    seq: int
    at: datetime
    actor: str
    action: str
    subject_type: str
    subject_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
