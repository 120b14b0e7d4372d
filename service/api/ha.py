"""`?ha_overcommit=true`: let a change through a failover plan it breaks (issue 26).

Only the operator and admin roles may ask (`service.core.failover.Overcommit.check_role`); the
change then goes through and the event `cluster.ha_overcommitted` records it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from service.core.credentials import Principal
from service.core.failover import Overcommit

HaOvercommitQuery = Annotated[
    bool,
    Query(
        description="With failover protection on, make the change even if it breaks the plan "
        "(operator or admin; recorded as the event cluster.ha_overcommitted)"
    ),
]


def overcommit(principal: Principal, requested: bool) -> Overcommit:
    """What the caller asked, refused at once (403) for a role that may not ask it."""
    out = Overcommit(requested=requested, role=principal.role)
    out.check_role()
    return out
