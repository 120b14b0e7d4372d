"""`describe` (kubectl style): a resource, its nested parts, what relates to it, its recent events.

Each view reads everything first (`read`), then either draws it for people (`show`) or gives one
JSON/YAML document (`document`), so `-o json` carries what the table shows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from numa_balloon_cli.output import fields, labels, out, table, when
from numa_balloon_cli.state import State
from numa_balloon_client import models as m
from numa_balloon_client import pending_steps, progress

#: How many of a resource's events `describe` shows (the newest).
RECENT = 10
IN_FLIGHT = ("planned", "preparing", "migrating", "settling")
EVENT_PAGE = 1000  # the API's largest page: a long history is read in few requests


def recent_events(st: State, subject_id: str) -> list[m.EventOut]:
    """The newest `RECENT` events about a subject (the log reads forward: keep the tail)."""
    return list(deque(st.nb.iter_events(subject_id=subject_id, limit=EVENT_PAGE), maxlen=RECENT))


def events(items: Sequence[m.EventOut]) -> None:
    rows = [(e.seq, when(e.at), e.actor, e.action) for e in items]
    table(f"events (last {RECENT})", ["SEQ", "AT", "ACTOR", "ACTION"], rows)


# --- hosts --------------------------------------------------------------------------------------


def host_fields(h: m.HostOut) -> None:
    mem = h.memory
    evac = h.evacuation
    fields(
        [
            ("name", h.name),
            ("id", h.id),
            ("state", h.state),
            ("labels", labels(h.labels)),
            ("external id", h.external_id),
            ("created", when(h.created_at)),
            ("version", h.version),
            (
                "memory MiB",
                f"capacity {mem.capacity_mib}, allocated {mem.allocated_mib}, "
                f"claimed {mem.claimed_mib}, free {mem.free_mib}",
            ),
            (
                "drift",
                "flagged (the free memory the agent observes and the books disagree)"
                if h.drift_flagged
                else "none",
            ),
            (
                "evacuation",
                None
                if evac is None
                else f"since {when(evac.requested_at)}: {evac.domains_remaining} domain(s) left, "
                f"{evac.migrations_in_flight} migration(s) in flight",
            ),
        ]
    )


def pnodes(h: m.HostOut, acc: m.Accounting | None) -> None:
    """The pnodes with their memory, CPUs and accounting (and what the agent observed)."""
    observed = {p.index: p.observed_free_mib for p in acc.pnodes} if acc is not None else {}
    rows = [
        (
            p.index,
            p.memory_mib,
            p.reserved_mib,
            p.capacity_mib,
            p.allocated_mib,
            p.claimed_mib,
            p.free_mib,
            observed.get(p.index),
            p.cpus,
        )
        for p in h.pnodes
    ]
    columns = ["PNODE", "MEMORY MiB", "RESERVED MiB", "CAPACITY MiB", "ALLOCATED MiB"]
    columns += ["CLAIMED MiB", "FREE MiB", "OBSERVED FREE MiB", "CPUS"]
    table("pnodes", columns, rows)


def slit(distances: list[list[int]]) -> None:
    rows = [(i, " ".join(f"{d:>3}" for d in row)) for i, row in enumerate(distances)]
    table("distances (SLIT)", ["PNODE", "ROW"], rows)


def backing(st: State, acc: m.Accounting) -> None:
    st.names.domains(d.domain_id for d in acc.domains)
    rows = [
        (
            st.names.domain(d.domain_id),
            " | ".join(" ".join(map(str, r)) for r in d.backing_mib),
            d.held_over_target_mib or None,
        )
        for d in acc.domains
    ]
    table(
        "domains (backing MiB, vnode x pnode)", ["DOMAIN", "BACKING", "HELD OVER TARGET MiB"], rows
    )


def migration_rows(st: State, migs: Sequence[m.MigrationOut]) -> list[tuple[Any, ...]]:
    st.names.domains(x.domain_id for x in migs)
    return [
        (
            x.id,
            st.names.domain(x.domain_id),
            x.state,
            st.names.host(x.source_host_id),
            st.names.host(x.destination_host_id),
            when(x.created_at),
        )
        for x in migs
    ]


MIGRATION_COLUMNS = ["ID", "DOMAIN", "STATE", "FROM", "TO", "CREATED"]


@dataclass
class HostView:
    host: m.HostOut
    accounting: m.Accounting
    domains: list[m.DomainOut]
    migrations: list[m.MigrationOut]
    events: list[m.EventOut]
    st: State

    @classmethod
    def read(cls, st: State, h: m.HostOut) -> HostView:
        migs = [
            x
            for state in IN_FLIGHT
            for x in st.nb.iter_migrations(state=state)
            if h.id in (x.source_host_id, x.destination_host_id)
        ]
        domains = list(st.nb.iter_domains(host_id=h.id))
        st.names.known(domains=((d.id, d.name) for d in domains))
        return cls(h, st.nb.host_accounting(h.id), domains, migs, recent_events(st, h.id), st)

    def document(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "accounting": self.accounting,
            "domains": self.domains,
            "migrations_in_flight": self.migrations,
            "events": self.events,
        }

    def show(self) -> None:
        host_fields(self.host)
        pnodes(self.host, self.accounting)
        slit(self.host.distances)
        rows = [
            (d.name, d.state, d.memory.target_mib, d.memory.static_max_mib, len(d.vnodes))
            for d in self.domains
        ]
        table(f"domains ({len(rows)})", ["NAME", "STATE", "TARGET MiB", "MAX MiB", "VNODES"], rows)
        if any(d.held_over_target_mib for d in self.accounting.domains):
            backing(self.st, self.accounting)
        table(
            "migrations in flight",
            MIGRATION_COLUMNS,
            migration_rows(self.st, self.migrations),
        )
        events(self.events)


# --- domains ------------------------------------------------------------------------------------


def domain_fields(st: State, d: m.DomainOut) -> None:
    mem = d.memory
    fields(
        [
            ("name", d.name),
            ("id", d.id),
            ("host", st.names.host(d.host_id)),
            ("state", d.state),
            ("policy", d.policy),
            (
                "uncooperative",
                "yes (its balloon does not follow its target)" if d.uncooperative else "no",
            ),
            ("labels", labels(d.labels)),
            ("external id", d.external_id),
            ("created", when(d.created_at)),
            ("version", d.version),
            (
                "memory MiB",
                f"target {mem.target_mib}, dynamic {mem.dynamic_min_mib}.."
                f"{mem.dynamic_max_mib}, static max {mem.static_max_mib}, "
                f"block {d.block_mib}",
            ),
        ]
    )


def vnodes(d: m.DomainOut) -> None:
    rows = [
        (
            v.index,
            v.size_mib,
            v.target_mib,
            v.actual_mib,
            v.home_pnode,
            " ".join(map(str, v.backing_mib)),
            v.plugged_blocks,
            ",".join(map(str, v.vcpus)),
        )
        for v in d.vnodes
    ]
    columns = ["VNODE", "SIZE MiB", "TARGET MiB", "ACTUAL MiB", "HOME"]
    columns += ["BACKING MiB / PNODE", "PLUGGED", "VCPUS"]
    table("vnodes", columns, rows)


@dataclass
class DomainView:
    domain: m.DomainOut
    migrations: list[m.MigrationOut]
    events: list[m.EventOut]
    st: State

    @classmethod
    def read(cls, st: State, d: m.DomainOut) -> DomainView:
        migs = list(deque(st.nb.iter_migrations(domain_id=d.id), maxlen=5))
        st.names.known(domains=[(d.id, d.name)])
        return cls(d, migs, recent_events(st, d.id), st)

    def document(self) -> dict[str, Any]:
        return {"domain": self.domain, "migrations": self.migrations, "events": self.events}

    def show(self) -> None:
        domain_fields(self.st, self.domain)
        vnodes(self.domain)
        table("migrations (last 5)", MIGRATION_COLUMNS, migration_rows(self.st, self.migrations))
        events(self.events)


# --- migrations ---------------------------------------------------------------------------------


def who(st: State, mig: m.MigrationOut, step: m.MigrationStepOut) -> str:
    """Who must complete a step, named: `the guest of web: plug vnode 0`."""
    vnode = "" if step.vnode is None else f" vnode {step.vnode}"
    if step.actor == "guest":
        by = f"the guest of {st.names.domain(mig.domain_id)} (on {st.names.host(step.host_id)})"
    elif step.actor == "agent":
        by = f"the agent of host {st.names.host(step.host_id)}"
    else:
        by = "the service"
    return f"{by}: {step.op}{vnode} (step {step.seq})"


def waiting_on(st: State, mig: m.MigrationOut) -> list[str]:
    return [who(st, mig, s) for s in pending_steps(mig)]


def migration_fields(st: State, mig: m.MigrationOut) -> None:
    fields(
        [
            ("id", mig.id),
            ("domain", st.names.domain(mig.domain_id)),
            ("state", mig.state),
            ("strategy", mig.strategy),
            ("from", st.names.host(mig.source_host_id)),
            ("to", st.names.host(mig.destination_host_id)),
            ("auto advance", "yes" if mig.auto_advance else "no"),
            ("created", when(mig.created_at)),
            ("last progress", when(mig.progress_at)),
            ("claims lease until", when(mig.expires_at)),
            ("stuck", (mig.stuck_reason or "yes") if mig.stuck else None),
            ("reason", mig.reason),
        ]
    )


@dataclass
class MigrationView:
    migration: m.MigrationOut
    events: list[m.EventOut]
    st: State

    @classmethod
    def read(cls, st: State, mig: m.MigrationOut) -> MigrationView:
        return cls(mig, recent_events(st, mig.id), st)

    def document(self) -> dict[str, Any]:
        return {"migration": self.migration, "events": self.events}

    def show(self) -> None:
        mig, names = self.migration, self.st.names
        migration_fields(self.st, mig)
        if mig.plan is not None:
            p = mig.plan
            fields(
                [
                    ("plan", f"moves {p.moved_mib} MiB"),
                    ("distortion", f"{p.distortion_before:.3f} -> {p.distortion_after:.3f}"),
                    (
                        "remote fraction",
                        f"{p.remote_fraction_before:.3f} -> {p.remote_fraction_after:.3f}",
                    ),
                    ("mapping", f"{p.mapping_before} -> {p.mapping_after}"),
                ]
            )
        rows = [(phase, f"{done}/{total}") for phase, (done, total) in progress(mig).items()]
        table("steps acknowledged per phase", ["PHASE", "DONE"], rows)
        claims = [(names.host(c.host_id), c.pnode, c.mib, when(c.expires_at)) for c in mig.claims]
        table("claims", ["HOST", "PNODE", "MiB", "LEASE UNTIL"], claims)
        steps = [
            (
                s.seq,
                s.phase,
                s.op,
                s.actor,
                names.host(s.host_id),
                s.vnode,
                s.pnode,
                s.mib,
                s.state,
                s.detail,
            )
            for s in sorted(mig.steps, key=lambda s: s.seq)
        ]
        columns = ["SEQ", "PHASE", "OP", "ACTOR", "HOST", "VNODE", "PNODE", "MiB", "STATE"]
        table("steps", [*columns, "DETAIL"], steps)
        pending = waiting_on(self.st, mig)
        if pending:
            out.print("waiting on:")
            for line in pending:
                out.print(f"  {line}")
        events(self.events)
