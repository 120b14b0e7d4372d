"""The whole data model: hosts and their pnodes, domains and their vnodes and backing, claims,
migrations and their steps, tokens, events and idempotency records.

Per-pnode accounting (`allocated_mib`, `claimed_mib`) is materialized on the pnode row and guarded
by a CHECK constraint, so even a bug in the service layer cannot commit an overcommitted pnode: the
database refuses it on PostgreSQL and SQLite alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.db.base import JSONType, UUIDStr, new_id

from .base import Base

TOKEN_KINDS = ("agent", "guest")
API_KEY_ROLES = ("admin", "operator", "scheduler", "enroll", "viewer")


class ClusterSettings(Base):
    """Singleton row (id = 1): cluster-wide hotplug block size and the worst-case template."""

    __tablename__ = "cluster_settings"
    __table_args__ = (
        CheckConstraint("id = 1", name="singleton"),
        CheckConstraint("block_mib > 0", name="block_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    block_mib: Mapped[int] = mapped_column(Integer)
    worst_case_template: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # Failover protection (issue 26): {host_failures, label_selector, allow_spread,
    # overcommitted}; NULL when off. See service/core/failover.py.
    ha: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column()

    __mapper_args__ = {"version_id_col": version}


class Host(Base):
    __tablename__ = "hosts"
    __table_args__ = (
        CheckConstraint("state IN ('active', 'maintenance', 'offline')", name="state_valid"),
        CheckConstraint("agent IN ('connected', 'lost')", name="agent_valid"),
        Index("ix_hosts_created_at_id", "created_at", "id"),
        Index("ix_hosts_changed_xid", "changed_xid"),
    )

    id: Mapped[str] = mapped_column(UUIDStr, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="active")
    # The orchestrator's own id (a Kubernetes node name, a Nova hypervisor) and its labels.
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    labels: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    # Set by POST /v1/hosts/{id}/evacuate; cleared when the host is made active again.
    evacuation_requested_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The ACPI SLIT as an n x n list of ints; it is one value, read and written whole.
    distances: Mapped[list[list[int]]] = mapped_column(JSONType)
    drift_flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set when the host is declared failed (POST /v1/hosts/{id}/fail, or its agent lost): the
    # reason, when, and where its protected domains were restarted (service/core/recovery.py).
    recovery: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # The agent's last report (batch or observation): status the agent owns.
    observed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The service's judgement of the host's agent from its lease (`AgentLease`): None while it
    # never took one (not judged), "connected", or "lost" (its lease lapsed: no domain is placed
    # or migrated here until it renews). Status: flipped by `core/leases.py`, no version move.
    agent: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    version: Mapped[int] = mapped_column(Integer, default=1)
    # The transaction that last changed what placement reads of this host (name, state, SLIT,
    # agent judgement, pnode counters); stamped by triggers on PostgreSQL, never by the service. See
    # service/db/cluster_feed.py.
    changed_xid: Mapped[int] = mapped_column(
        BigInteger, server_default="0", deferred=True, deferred_raiseload=True
    )

    pnodes: Mapped[list[Pnode]] = relationship(
        back_populates="host",
        order_by="Pnode.index",
        cascade="all, delete-orphan",
        lazy="raise",
    )

    __mapper_args__ = {"version_id_col": version}


class Pnode(Base):
    __tablename__ = "pnodes"
    __table_args__ = (
        CheckConstraint("memory_mib > 0", name="memory_positive"),
        CheckConstraint("reserved_mib >= 0 AND reserved_mib < memory_mib", name="reserved_range"),
        CheckConstraint("cpus >= 1", name="cpus_positive"),
        CheckConstraint("allocated_mib >= 0 AND claimed_mib >= 0", name="usage_nonnegative"),
        CheckConstraint(
            "allocated_mib + claimed_mib <= memory_mib - reserved_mib", name="no_overcommit"
        ),
    )

    host_id: Mapped[str] = mapped_column(
        UUIDStr, ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    memory_mib: Mapped[int] = mapped_column(BigInteger)
    reserved_mib: Mapped[int] = mapped_column(BigInteger)
    cpus: Mapped[int] = mapped_column(Integer)
    allocated_mib: Mapped[int] = mapped_column(BigInteger, default=0)
    claimed_mib: Mapped[int] = mapped_column(BigInteger, default=0)
    observed_free_mib: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # vCPUs of the domains whose vnodes are homed here, materialized with allocated_mib so that
    # ranking a cluster never aggregates every vnode of every domain.
    load_vcpus: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    host: Mapped[Host] = relationship(back_populates="pnodes", lazy="raise")

    @property
    def capacity_mib(self) -> int:
        return self.memory_mib - self.reserved_mib


class Domain(Base):
    __tablename__ = "domains"
    __table_args__ = (
        CheckConstraint(
            "dynamic_min_mib >= 0 AND dynamic_min_mib <= target_mib "
            "AND target_mib <= dynamic_max_mib AND dynamic_max_mib <= static_max_mib",
            name="memory_order",
        ),
        CheckConstraint("block_mib > 0", name="block_positive"),
        Index("ix_domains_created_at_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(UUIDStr, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    labels: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    host_id: Mapped[str | None] = mapped_column(
        UUIDStr, ForeignKey("hosts.id", ondelete="RESTRICT"), index=True, nullable=True
    )
    state: Mapped[str] = mapped_column(String(16), default="running")
    policy: Mapped[str] = mapped_column(String(16), default="proportional")
    block_mib: Mapped[int] = mapped_column(Integer)
    static_max_mib: Mapped[int] = mapped_column(BigInteger)
    dynamic_min_mib: Mapped[int] = mapped_column(BigInteger)
    dynamic_max_mib: Mapped[int] = mapped_column(BigInteger)
    target_mib: Mapped[int] = mapped_column(BigInteger)
    # Virtual SLIT, k x k; what the guest believes, independent of the host.
    distances: Mapped[list[list[int]]] = mapped_column(JSONType)
    from_template: Mapped[bool] = mapped_column(Boolean, default=False)
    uncooperative: Mapped[bool] = mapped_column(Boolean, default=False)
    # The last failed attempt of one of its pool steps (status, like `uncooperative`): op, vnode,
    # attempt, max_attempts, detail, failed_at, retry_at (None once the attempts are spent).
    # Cleared when a pool step of the domain is done or its target changes.
    step_failure: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    target_set_at: Mapped[datetime] = mapped_column()
    last_progress_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    version: Mapped[int] = mapped_column(Integer, default=1)

    vnodes: Mapped[list[Vnode]] = relationship(
        back_populates="domain",
        order_by="Vnode.index",
        cascade="all, delete-orphan",
        lazy="raise",
    )

    __mapper_args__ = {"version_id_col": version}


class Vnode(Base):
    __tablename__ = "vnodes"
    __table_args__ = (
        CheckConstraint("size_mib > 0", name="size_positive"),
        CheckConstraint("target_mib >= 0 AND target_mib <= size_mib", name="target_range"),
    )

    domain_id: Mapped[str] = mapped_column(
        UUIDStr, ForeignKey("domains.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size_mib: Mapped[int] = mapped_column(BigInteger)
    vcpus: Mapped[list[int]] = mapped_column(JSONType)
    # len(vcpus), kept as a column so per-pnode vCPU load is one aggregate query.
    vcpu_count: Mapped[int] = mapped_column(Integer)
    target_mib: Mapped[int] = mapped_column(BigInteger)
    # What the hypervisor holds for this pool (boot memory + plugged blocks), as the host
    # agent's or the guest agent's last report said; None until one reports.
    actual_mib: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # What the guest kernel shows of it (the node's MemTotal: less than held by the kernel's own
    # reservations and by blocks not yet online), as the guest agent last reported; None without.
    guest_visible_mib: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    home_pnode: Mapped[int | None] = mapped_column(Integer, nullable=True)

    domain: Mapped[Domain] = relationship(back_populates="vnodes", lazy="raise")


class Backing(Base):
    """X[v, p]: MiB of vnode v backed by pnode p of the domain's current host (non-zero only)."""

    __tablename__ = "backing"
    __table_args__ = (
        CheckConstraint("mib > 0", name="mib_positive"),
        ForeignKeyConstraint(
            ["domain_id", "vnode"], ["vnodes.domain_id", "vnodes.index"], ondelete="CASCADE"
        ),
        ForeignKeyConstraint(
            ["host_id", "pnode"], ["pnodes.host_id", "pnodes.index"], ondelete="RESTRICT"
        ),
    )

    domain_id: Mapped[str] = mapped_column(UUIDStr, primary_key=True)
    vnode: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    host_id: Mapped[str] = mapped_column(UUIDStr, primary_key=True, index=True)
    pnode: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    mib: Mapped[int] = mapped_column(BigInteger)


class Claim(Base):
    """Memory reserved on one pnode until released, converted into backing, or expired."""

    __tablename__ = "claims"
    __table_args__ = (
        CheckConstraint("mib > 0", name="mib_positive"),
        ForeignKeyConstraint(
            ["host_id", "pnode"], ["pnodes.host_id", "pnodes.index"], ondelete="RESTRICT"
        ),
    )

    id: Mapped[str] = mapped_column(UUIDStr, primary_key=True, default=new_id)
    host_id: Mapped[str] = mapped_column(UUIDStr, index=True)
    pnode: Mapped[int] = mapped_column(Integer)
    mib: Mapped[int] = mapped_column(BigInteger)
    domain_id: Mapped[str | None] = mapped_column(
        UUIDStr, ForeignKey("domains.id", ondelete="CASCADE"), nullable=True
    )
    migration_id: Mapped[str | None] = mapped_column(
        UUIDStr, ForeignKey("migrations.id", ondelete="CASCADE"), index=True, nullable=True
    )
    # NULL: held until its migration ends. Only memory nothing may be using yet (a `planned`
    # migration's) is leased by the clock; once a guest may be copying into it, never.
    expires_at: Mapped[datetime | None] = mapped_column(index=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column()


class Migration(Base):
    __tablename__ = "migrations"
    __table_args__ = (
        CheckConstraint(
            "state IN ('planned', 'preparing', 'migrating', 'settling', 'completed', "
            "'aborted', 'failed')",
            name="state_valid",
        ),
        CheckConstraint("strategy IN ('rebalance', 'replug')", name="strategy_valid"),
        Index("ix_migrations_created_at_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(UUIDStr, primary_key=True, default=new_id)
    domain_id: Mapped[str] = mapped_column(
        UUIDStr, ForeignKey("domains.id", ondelete="CASCADE"), index=True
    )
    # SET NULL: a finished migration outlives the hosts it ran between (history, not a lock).
    source_host_id: Mapped[str | None] = mapped_column(
        UUIDStr, ForeignKey("hosts.id", ondelete="SET NULL"), index=True, nullable=True
    )
    destination_host_id: Mapped[str | None] = mapped_column(
        UUIDStr, ForeignKey("hosts.id", ondelete="SET NULL"), index=True, nullable=True
    )
    strategy: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="planned")
    plan: Mapped[dict[str, Any]] = mapped_column(JSONType)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The service moves to the next phase as soon as the current phase's steps are acknowledged.
    auto_advance: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set while `planned` (the claims' lease); NULL once past it: the claims are then held.
    expires_at: Mapped[datetime | None] = mapped_column(index=True, nullable=True)
    # Last sign of progress (created, advanced, a step acknowledged); `stuck_at` is when the
    # sweeper found none for `stuck_after_s` and said so with an event (cleared by progress).
    progress_at: Mapped[datetime] = mapped_column()
    stuck_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    version: Mapped[int] = mapped_column(Integer, default=1)

    steps: Mapped[list[Step]] = relationship(
        back_populates="migration", order_by="Step.seq", cascade="all, delete-orphan", lazy="raise"
    )

    __mapper_args__ = {"version_id_col": version}


class Step(Base):
    """One unit of work for a host agent or a guest: claim, balloon, unplug, plug, migrate, release.

    Steps come from migrations, rebalances and target changes; agents fetch the pending ones of
    their host and acknowledge them. A migration's later phases wait ("waiting") until it
    advances into them, so an agent never sees a step it must not carry out yet.
    """

    __tablename__ = "steps"
    __table_args__ = (
        CheckConstraint(
            "state IN ('waiting', 'pending', 'acked', 'failed', 'cancelled')", name="state_valid"
        ),
        Index("ix_steps_host_id_state", "host_id", "state"),
        # A new target cancels the domain's pending steps: found here, not among every step
        # the domain ever had (cancelled and acked ones stay for the events' window).
        Index(
            "ix_steps_domain_id_pending",
            "domain_id",
            postgresql_where=text("state = 'pending'"),
            sqlite_where=text("state = 'pending'"),
        ),
    )

    id: Mapped[str] = mapped_column(UUIDStr, primary_key=True, default=new_id)
    migration_id: Mapped[str | None] = mapped_column(
        UUIDStr, ForeignKey("migrations.id", ondelete="CASCADE"), nullable=True, index=True
    )
    domain_id: Mapped[str] = mapped_column(
        UUIDStr, ForeignKey("domains.id", ondelete="CASCADE"), index=True
    )
    host_id: Mapped[str] = mapped_column(UUIDStr, ForeignKey("hosts.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    phase: Mapped[str] = mapped_column(String(16))
    op: Mapped[str] = mapped_column(String(16))
    vnode: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pnode: Mapped[int | None] = mapped_column(Integer, nullable=True)
    mib: Mapped[int] = mapped_column(BigInteger, default=0)
    pfn_ranges: Mapped[list[list[int]]] = mapped_column(JSONType, default=list)
    target_mib: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # For pool operations: whether the pool grows to target_mib (True) or shrinks to it (False),
    # so a guest report past the target completes the step.
    grow: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    # A failed pool step is issued again as a new step (attempt + 1), shown to agents only from
    # `not_before` (the backoff); None: at once.
    attempt: Mapped[int] = mapped_column(Integer, server_default="1")
    not_before: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column()
    acked_at: Mapped[datetime | None] = mapped_column(nullable=True)

    migration: Mapped[Migration | None] = relationship(back_populates="steps", lazy="raise")

    @property
    def actor(self) -> str:
        """Who completes the step: see `step_actor`."""
        return step_actor(self.phase, self.op)


GUEST_POOL_OPS = ("plug", "unplug", "balloon")


def step_actor(phase: str, op: str) -> str:
    """`service` for claims (done when the migration is created), `guest` for pool operations
    (the balloon driver's report completes them), `agent` for the rest (migrate, release) and for
    a rebalance's block moves, which the host agent carries out on the guest's behalf."""
    if op == "claim":
        return "service"
    if op in GUEST_POOL_OPS and phase != "rebalance":
        return "guest"
    return "agent"


class AgentLease(Base):
    """A host agent's lease (`PUT /v1/agent/hosts/{id}/lease`): liveness apart from state, so
    that a renewal is one small row written, not a report. Renewed every ~10 s by every agent;
    nothing else about the host moves with it (no host row lock, no trigger, no version)."""

    __tablename__ = "agent_leases"

    host_id: Mapped[str] = mapped_column(
        UUIDStr, ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    expires_at: Mapped[datetime]
    renewed_at: Mapped[datetime]
    # The agent's renewal count since it started (None: it sends none); 0 or a step back is a
    # restart of the agent, which then owes a full report.
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    lost: Mapped[bool] = mapped_column(Boolean, default=False)
    # Written by each renewal for its RETURNING: the judgement before it (None: the first
    # lease, "lost": the agent returns) and whether the renewal itself asks for a full report.
    prior: Mapped[str | None] = mapped_column(String(16), nullable=True)
    report_due: Mapped[bool] = mapped_column(Boolean, default=True)


class Token(Base):
    """Agent and guest bearer tokens, stored only as SHA-256 digests.

    Tokens are 256-bit random strings, so a fast digest is enough: there is nothing to brute-force.
    The admin token comes from the settings and is never stored.
    """

    __tablename__ = "tokens"
    __table_args__ = (
        CheckConstraint("kind IN ('agent', 'guest')", name="kind_valid"),
        Index("ix_tokens_subject", "kind", "subject_id"),
    )

    id: Mapped[str] = mapped_column(UUIDStr, primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(8))
    subject_id: Mapped[str] = mapped_column(UUIDStr)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ApiKey(Base):
    """A named toolstack credential with one role, stored as the SHA-256 digest of its secret.

    The secret (`nbk_` + 256 random bits) is shown once, at creation and at each rotation. Rows
    are never deleted: a revoked key keeps its name, so the audit log's `key:<name>` stays
    unambiguous and a name cannot be reused to impersonate a former key in the log.
    """

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint(
            "role IN ('admin', 'operator', 'scheduler', 'enroll', 'viewer')", name="role_valid"
        ),
        Index("ix_api_keys_created_at_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(UUIDStr, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    rotated_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Event(Base):
    """Append-only audit log; `seq` orders it and serves as the `since` cursor."""

    __tablename__ = "events"
    # `GET /v1/events?actor=key:<name>` reads one actor's events in seq order.
    __table_args__ = (Index("ix_events_actor_seq", "actor", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column()
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str | None] = mapped_column(UUIDStr, nullable=True, index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)


class IdempotencyRecord(Base):
    """The stored outcome of a create under an `Idempotency-Key`, replayed on retries.

    The key itself is not kept, only its SHA-256 digest: the response's secrets (an agent or
    guest token, an API key's secret) are sealed under a key derived from it, so only the client
    that holds the Idempotency-Key can get them back (service/db/sealed.py)."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("actor", "key_digest"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(String(80))
    key_digest: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    # The response body with its secret fields set to null; the secrets are in `sealed_secrets`.
    response_body: Mapped[dict[str, Any]] = mapped_column(JSONType)
    response_headers: Mapped[dict[str, str] | None] = mapped_column(JSONType, nullable=True)
    sealed_secrets: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column(index=True)
