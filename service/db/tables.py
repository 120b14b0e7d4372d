"""The mapped tables as Core `Table`s, for statements that skip the ORM (write batches, plain-row
reads): built without the ORM's compile and loading steps, they cost less on hot paths."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table

from service.db.models import Backing, Claim, Domain, Event, Host, Pnode, Step, Vnode

BACKING = cast(Table, Backing.__table__)
CLAIMS = cast(Table, Claim.__table__)
DOMAINS = cast(Table, Domain.__table__)
EVENTS = cast(Table, Event.__table__)
HOSTS = cast(Table, Host.__table__)
PNODES = cast(Table, Pnode.__table__)
STEPS = cast(Table, Step.__table__)
VNODES = cast(Table, Vnode.__table__)
