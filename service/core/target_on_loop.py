"""A domain's new target, its unit awaited on the event loop on a plain connection (issue 25).

`PUT /v1/domains/{id}/target` is the orchestrators' hot write. Through a session in the thread
pool a third of its CPU was SQLAlchemy's ORM (the locked host and the domain loaded as mapped
instances, the session, its pre-ping and its commit) and the hops to the thread and back. Here
the same unit runs on one of the worker's durable plain connections (`unit.on_plain`, durable:
its commit waits for the WAL flush like every write that moves memory): the same lock and reads
as plain rows (`db/target_rows.py`), the same rule (`domains.retarget`), the same `apply`
(`apply_plain`: the same statements), the same view. A write on a host whose lock is held waits
on that connection, not in a thread.

What it does not do, it leaves to the sessions' path (`domain_requests.change_target`) by
answering None after rolling back, having written nothing: a raise while failover protection is
on (`failover.admit` reads the cluster through the session), a domain whose last steps failed
(its failure is cleared with the write), no such domain or no host (the sessions' path says
which), counters that cannot be trusted, and whatever fails on the plain connection itself.
"""

from __future__ import annotations

from datetime import datetime

from service.core import unit
from service.core.domain_requests import Precondition
from service.core.domains import retarget
from service.core.views import domain_out
from service.db.apply import apply_plain
from service.db.raw import PlainTransaction
from service.db.target_rows import load_target_state
from service.schemas.domains import DomainOut, TargetPut


async def change_target_on_loop(
    db: unit.Database,
    domain_id: str,
    body: TargetPut,
    actor: str,
    now: datetime,
    precondition: Precondition,
) -> DomainOut | None:
    """The domain with its new target, committed; None: the sessions' path must take it."""

    async def work(tx: PlainTransaction) -> DomainOut | None:
        loaded = await load_target_state(tx, domain_id, now)
        if loaded is None:
            return None
        domain, state, protection_off = loaded
        if domain.step_failure is not None:
            return None
        if body.target_mib > domain.target_mib and not protection_off:
            return None
        precondition(domain.version)
        await apply_plain(tx, state, retarget(state, domain, body, actor=actor, now=now), now=now)
        return domain_out(domain, state.backing[domain.id], state.n_pnodes, state.host.agent)

    got = await unit.on_plain(db, lambda plain: plain.transaction(work), durable=True)
    return None if isinstance(got, unit.NotNow) else got
