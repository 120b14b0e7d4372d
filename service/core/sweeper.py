"""The sweeper: frees the claims of `planned` migrations whose lease ran out, and flags the
migrations that stopped progressing. It owns its transactions (one per expired migration, since
each locks a pair of hosts), so callers hand it a session factory, never their own session.

Every replica runs it in the background (`sweep_interval_s`), so expired claims stop counting by
themselves; requests that depend on fresh claims (starting a migration, an agent's heartbeat)
run it first too. Replicas sweeping at once only wait on each other's row locks.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from service.core import migrations
from service.db.idempotency import purge_expired
from service.db.retry import run_with_retries
from service.settings import Settings

log = logging.getLogger("numa_balloon")
SWEEPER = "service:sweeper"


def sweep_migrations(
    factory: sessionmaker[Session], now: datetime, settings: Settings, actor: str = SWEEPER
) -> tuple[int, int]:
    """Expire lapsed `planned` migrations and flag stuck ones: (expired, newly stuck)."""
    expired = 0
    with factory() as session:
        ids = migrations.expired_migration_ids(session, now)
        session.rollback()
        for migration_id in ids:

            def expire_one(mid: str = migration_id) -> bool:
                done = migrations.expire_migration(session, mid, now, actor)
                session.commit()
                return done

            expired += run_with_retries(session, expire_one)

        def flag() -> int:
            count = migrations.flag_stuck(session, now, settings, actor)
            session.commit()
            return count

        stuck = run_with_retries(session, flag)
    return expired, stuck


def purge_idempotency_records(factory: sessionmaker[Session], now: datetime) -> int:
    """Delete the Idempotency-Key records whose window ended, with the sealed secrets they
    hold: a secret shown once is kept, sealed, for the idempotency window and no longer."""
    with factory() as session:
        count = run_with_retries(session, lambda: purge_expired(session, now))
        session.commit()
    return count
