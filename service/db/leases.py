"""Agent leases as Core statements: a renewal is one statement (an upsert whose RETURNING says
what the service wants of the agent), a sweep is one statement per lapsed batch.

Why a table of its own rather than columns on `hosts`: every agent renews every ~10 s. On the
host row a renewal would wait behind the host's lock (held by reports, target changes and
migrations), run the placement trigger and write a wide row; here it writes one narrow row
that nothing else locks. The judgement that placement reads (`hosts.agent`) moves only when it
flips, a rare second statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Insert,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from service.db.raw import PlainConnections
from service.db.tables import AGENT_LEASES, HOSTS, STEPS
from service.vocabulary import StepState

CONNECTED, LOST = "connected", "lost"
# What a lost host is refused, said in each 409.
AWAY = "no domain is placed or migrated to it until its agent renews its lease"


@dataclass(frozen=True, slots=True)
class Renewal:
    """What one renewal found: the judgement before it (None: the host's first lease, "lost":
    its agent returns), whether the service wants a full report, whether steps are pending."""

    prior: str | None
    report: bool
    steps_pending: bool


# What a renewal returns besides its own row. The last report is the host's `observed_at` (every
# report stamps it); one older than the worker's start (`b_stale` is the later of that and now -
# the full-report period) or a host flagged for drift wants a full report; and whether steps
# are pending on the host (a report completes pool steps, the agent fetches the others).
_WANTED = (
    select(
        or_(
            HOSTS.c.observed_at.is_(None),
            HOSTS.c.observed_at < bindparam("b_stale", type_=HOSTS.c.observed_at.type),
            HOSTS.c.drift_flagged,
        )
    )
    .where(HOSTS.c.id == bindparam("b_host"))
    .scalar_subquery(),
    exists()
    .where(STEPS.c.host_id == bindparam("b_host"), STEPS.c.state == StepState.PENDING.value)
    .label("pending"),
)


def _renew(insert: Any) -> Insert:
    t = AGENT_LEASES
    ins = insert(t).values(
        host_id=bindparam("b_host"),
        expires_at=bindparam("b_expires"),
        renewed_at=bindparam("b_now"),
        seq=bindparam("b_seq"),
        lost=False,
        prior=None,
        report_due=True,
    )
    new_seq = ins.excluded.seq
    # The agent counts its renewals from 0 when it starts: 0, or a count that went back, is a
    # restarted agent, which holds nothing the service told it before.
    restarted = and_(new_seq.is_not(None), or_(new_seq == 0, new_seq <= func.coalesce(t.c.seq, -1)))
    upsert = ins.on_conflict_do_update(
        index_elements=[t.c.host_id],
        set_={
            "expires_at": ins.excluded.expires_at,
            "renewed_at": ins.excluded.renewed_at,
            "seq": new_seq,
            "lost": False,
            "prior": case((t.c.lost, literal(LOST)), else_=literal(CONNECTED)),
            "report_due": or_(t.c.lost, restarted),
        },
    )
    out: Insert = upsert.returning(t.c.prior, t.c.report_due, *_WANTED)
    return out


_RENEW = {"postgresql": _renew(postgresql.insert), "sqlite": _renew(sqlite.insert)}


def _renew_held() -> Any:
    """The usual renewal: the lease exists and is not lost, so nothing but the row moves."""
    t = AGENT_LEASES
    seq = bindparam("b_seq", type_=t.c.seq.type)
    restarted = and_(seq.is_not(None), or_(seq == 0, seq <= func.coalesce(t.c.seq, -1)))
    return (
        update(t)
        .where(t.c.host_id == bindparam("b_host"), ~t.c.lost)
        .values(
            expires_at=bindparam("b_expires", type_=t.c.expires_at.type),
            renewed_at=bindparam("b_now", type_=t.c.renewed_at.type),
            seq=seq,
            prior=CONNECTED,
            report_due=restarted,
        )
        .returning(t.c.report_due, *_WANTED)
    )


_RENEW_HELD = _renew_held()
_JUDGE = (
    update(HOSTS)
    .where(HOSTS.c.id == bindparam("b_host"))
    .values(agent=bindparam("b_agent", type_=HOSTS.c.agent.type))
)
_LAPSED = (
    update(AGENT_LEASES)
    .where(~AGENT_LEASES.c.lost, AGENT_LEASES.c.expires_at < bindparam("b_now"))
    .values(lost=True)
    .returning(AGENT_LEASES.c.host_id, AGENT_LEASES.c.expires_at)
)
_MARK_LOST = (
    update(HOSTS)
    .where(HOSTS.c.id.in_(bindparam("b_hosts", expanding=True)))
    .values(agent=LOST)
    .returning(HOSTS.c.id, HOSTS.c.name)
)
_LEASES_OF = select(AGENT_LEASES.c.host_id, AGENT_LEASES.c.expires_at, AGENT_LEASES.c.lost).where(
    AGENT_LEASES.c.host_id.in_(bindparam("b_hosts", expanding=True))
)


def _params(
    host_id: str, seq: int | None, now: datetime, expires_at: datetime, stale_before: datetime
) -> dict[str, Any]:
    return {
        "b_host": host_id,
        "b_expires": expires_at,
        "b_now": now,
        "b_seq": seq,
        "b_stale": stale_before,
    }


def _held(row: Sequence[Any]) -> Renewal:
    """A held lease's renewal from `_RENEW_HELD`'s row (report due, stale, steps pending)."""
    due, stale, pending = row
    return Renewal(
        prior=CONNECTED, report=bool(due or stale or pending), steps_pending=bool(pending)
    )


def renew(
    session: Session,
    host_id: str,
    seq: int | None,
    now: datetime,
    expires_at: datetime,
    stale_before: datetime,
) -> Renewal:
    """Renew (or take) the host's lease: one statement. The host must exist (a foreign key
    violation otherwise: the caller checks the host first only when it must)."""
    conn = session.connection()
    stmt = _RENEW[conn.dialect.name]
    params = _params(host_id, seq, now, expires_at, stale_before)
    prior, due, stale, pending = conn.execute(stmt, params).one()
    return Renewal(prior=prior, report=bool(due or stale or pending), steps_pending=bool(pending))


def renew_held(
    session: Session,
    host_id: str,
    seq: int | None,
    now: datetime,
    expires_at: datetime,
    stale_before: datetime,
) -> Renewal | None:
    """The usual renewal, one UPDATE: None when the host has no lease yet or it was judged lost
    (`renew` then takes it, and the judgement moves with it)."""
    params = _params(host_id, seq, now, expires_at, stale_before)
    row = session.connection().execute(_RENEW_HELD, params).first()
    return None if row is None else _held(row)


async def renew_held_plain(
    plain: PlainConnections,
    host_id: str,
    seq: int | None,
    now: datetime,
    expires_at: datetime,
    stale_before: datetime,
) -> Renewal | None:
    """`renew_held` on a plain connection (`db/raw.py`): the same statement, without the
    session around it. Raises `raw.Unavailable` when the connection fails."""
    params = _params(host_id, seq, now, expires_at, stale_before)
    row = await plain.one_row(_RENEW_HELD, params)
    return None if row is None else _held(row)


def judge(session: Session, host_id: str, agent: str) -> None:
    """Set the host's agent judgement (status: its version does not move)."""
    session.connection().execute(_JUDGE, {"b_host": host_id, "b_agent": agent})


def lapse(session: Session, now: datetime) -> list[tuple[str, str, datetime]]:
    """Mark every lease that lapsed before `now` lost, and its host's judgement with it: (host
    id, host name, when the lease expired) of each, in two statements. A lease renewed
    meanwhile is not lapsed (its row lock makes a concurrent renewal and this wait for each
    other), and each lapse is found by exactly one sweeper."""
    conn = session.connection()
    expired = {h: at for h, at in conn.execute(_LAPSED, {"b_now": now})}
    if not expired:
        return []
    marked = conn.execute(_MARK_LOST, {"b_hosts": sorted(expired)}).all()
    return sorted((h, name, expired[h]) for h, name in marked)


def leases_of(session: Session, host_ids: Sequence[str]) -> dict[str, datetime]:
    """When each of these hosts' leases expires (hosts that never took one are left out)."""
    if not host_ids:
        return {}
    rows = session.execute(_LEASES_OF, {"b_hosts": list(host_ids)})
    return {h: at for h, at, _ in rows}


__all__ = [
    "AWAY",
    "CONNECTED",
    "LOST",
    "Renewal",
    "judge",
    "lapse",
    "leases_of",
    "renew",
    "renew_held",
    "renew_held_plain",
]
