"""Host agents' leases: liveness apart from state (the Kubernetes node Lease, XAPI's heartbeat).

Every agent renews its host's lease every ~10 s (`PUT /v1/agent/hosts/{id}/lease`) and sends a
batch report only when something it observes changed or the renewal asks for one. A renewal is
one statement (`db/leases.renew`); only when the judgement flips (the first lease, a return)
is the host's `agent` written, with a `host.agent-returned` event on a return.

A lease that lapses makes the host's agent lost: every replica's sweeper runs `sweep_leases`,
which marks each lapsed lease once (`host.agent-lost`), and placement, creation and migration
treat a lost host as unavailable (409 when named) until its agent renews. A host whose agent
never took a lease is not judged.

Hook for failover: `agent_lost` runs in the transaction that marks hosts lost (add work that
must commit with the mark there), `after_agent_lost` after that commit, with the database
(start migrations off the lost hosts there, each in units of its own).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.core import failover, unit
from service.core.recovery import recover_host
from service.core.unit import Database
from service.db import leases as repo
from service.db.audit import record_event
from service.db.leases import CONNECTED, LOST
from service.errors import NotFound
from service.schemas.agent import LeaseOut
from service.schemas.failover import RecoveryOut
from service.settings import Settings

log = logging.getLogger("numa_balloon")
SWEEPER = "service:sweeper"


@dataclass(frozen=True, slots=True)
class LostHost:
    host_id: str
    name: str
    lease_expired_at: datetime


def _window(now: datetime, settings: Settings, booted_at: datetime) -> tuple[datetime, datetime]:
    """(when a lease renewed now expires, before when a report is stale)."""
    expires_at = now + timedelta(seconds=settings.agent_lease_s)
    return expires_at, max(now - timedelta(seconds=settings.agent_full_report_s), booted_at)


def _out(host_id: str, expires_at: datetime, held: repo.Renewal) -> LeaseOut:
    return LeaseOut(
        host_id=host_id,
        expires_at=expires_at,
        report=held.report,
        steps_pending=held.steps_pending,
    )


async def renew_on_loop(
    db: Database,
    host_id: str,
    seq: int | None,
    now: datetime,
    settings: Settings,
    booted_at: datetime,
) -> LeaseOut | None:
    """The usual renewal: one statement in autocommit on a plain connection, awaited on the
    event loop (`unit.on_plain`: no thread hop). None when it does not apply (the first lease,
    a return from lost) or that path is not available now: the caller then runs `renew` in the
    thread pool (for a first lease or a return, the held renewal runs there once more and again
    changes nothing)."""
    expires_at, stale_before = _window(now, settings, booted_at)
    held = await unit.on_plain(
        db,
        lambda plain: repo.renew_held_plain(plain, host_id, seq, now, expires_at, stale_before),
    )
    if held is None or isinstance(held, unit.NotNow):
        return None
    return _out(host_id, expires_at, held)


def renew(
    db: Database,
    host_id: str,
    seq: int | None,
    now: datetime,
    settings: Settings,
    booted_at: datetime,
    actor: str,
) -> LeaseOut:
    """A renewal on sessions: the usual one as one statement in autocommit
    (`unit.one_statement`: one round trip), else (the first lease, a return from lost, SQLite)
    `renew_lease`'s unit."""
    expires_at, stale_before = _window(now, settings, booted_at)
    held = unit.one_statement(
        db, lambda s: repo.renew_held(s, host_id, seq, now, expires_at, stale_before)
    )
    if held is not None:
        return _out(host_id, expires_at, held)
    return unit.write(db, lambda s: renew_lease(s, host_id, seq, now, settings, booted_at, actor))


def renew_lease(
    session: Session,
    host_id: str,
    seq: int | None,
    now: datetime,
    settings: Settings,
    booted_at: datetime,
    actor: str,
) -> LeaseOut:
    """Take or renew the host's lease (a unit of work): one statement, more on a flip (the
    first lease, a return from lost: the host's judgement and the event)."""
    expires_at, stale_before = _window(now, settings, booted_at)
    try:
        got = repo.renew(session, host_id, seq, now, expires_at, stale_before)
    except IntegrityError as exc:  # the host was deleted while its token still worked
        raise NotFound(f"no host with id {host_id}") from exc
    if got.prior != CONNECTED:
        repo.judge(session, host_id, CONNECTED)
        if got.prior == LOST:
            record_event(
                session,
                actor,
                "host.agent-returned",
                "host",
                host_id,
                before={"agent": LOST},
                after={"agent": CONNECTED, "lease_expires_at": expires_at.isoformat()},
                at=now,
            )
    return LeaseOut(
        host_id=host_id,
        expires_at=expires_at,
        report=got.report or got.prior != CONNECTED,
        steps_pending=got.steps_pending,
    )


def mark_lapsed(session: Session, now: datetime, actor: str = SWEEPER) -> list[LostHost]:
    """Judge lost every host whose agent's lease lapsed before `now`, with one
    `host.agent-lost` event each. Replicas sweeping at once find each lapse once."""
    lost = [LostHost(h, name, at) for h, name, at in repo.lapse(session, now)]
    for host in lost:
        record_event(
            session,
            actor,
            "host.agent-lost",
            "host",
            host.host_id,
            before={"agent": CONNECTED},
            after={"agent": LOST, "lease_expired_at": host.lease_expired_at.isoformat()},
            at=now,
        )
    return lost


def after_agent_lost(db: Database, hosts: Sequence[LostHost], now: datetime) -> None:
    """After the mark committed: with failover protection on, each lost host is declared failed
    and its protected domains restart on the plan's hosts (`recover_host`, a unit of work per
    host, as an operator's `POST /v1/hosts/{id}/fail` would). The host stays offline when its
    agent returns: a person puts it back in service, as XAPI's HA asks. Protection off: the mark
    alone keeps placements and migrations away."""
    for host in hosts:
        log.warning("host agent lost", extra={"host_id": host.host_id, "host_name": host.name})
    if not hosts or unit.read(db, _protection_on) is False:
        return
    for host in hosts:
        try:
            out = unit.write(db, functools.partial(_fail_over, host_id=host.host_id, now=now))
        except Exception:  # one host's recovery failing must not stop the others'
            log.exception("host failover failed", extra={"host_id": host.host_id})
            continue
        log.warning(
            "host failed over",
            extra={"host_id": host.host_id, "restarts": len(out.restarts)},
        )


def _fail_over(session: Session, *, host_id: str, now: datetime) -> RecoveryOut:
    return recover_host(session, host_id, now, "its agent's lease lapsed", "service")


def _protection_on(session: Session) -> bool:
    return failover.settings_of(failover.cluster_settings(session)) is not None


def sweep_leases(db: Database, now: datetime) -> list[LostHost]:
    """The sweeper's part: mark the lapsed leases in one unit of work, then the hook."""
    lost = unit.write(db, lambda session: mark_lapsed(session, now))
    if lost:
        after_agent_lost(db, lost, now)
    return lost
