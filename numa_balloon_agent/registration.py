"""The host agent's first contact: register this machine's host with the admin token, or find
and adopt the host registered for it before (by `numa-balloon hosts register --from-sysfs`, or
by an agent whose state directory was lost), and take a fresh agent token for it.

What an operator can count on:
- the same machine always registers as the same host: the create carries an Idempotency-Key
  derived from the machine, the name and the body, and the body carries the machine's
  `external_id` (see `numa_balloon_client.machine`);
- a host already there for this machine (same `external_id`, any name) is adopted, not
  duplicated and not refused: the agent re-issues that host's agent token
  (`POST /v1/hosts/{id}/agent-token`), so an agent still running elsewhere with the old token
  stops being able to report for it;
- a host with the agent's name but another machine's (or no) `external_id` is someone else's:
  the agent stops with one line saying what to change (its `--name`, or that host's
  `external_id` when the operator knows it is this machine).
Adopting needs the admin role (listing hosts and rotating a token); an `enroll` key registers
new hosts only.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from numa_balloon_client import Client, Conflict, Forbidden
from numa_balloon_client import models as m
from numa_balloon_client.programs.exits import Refused, one_line


def idempotency_key(body: dict[str, Any]) -> str:
    """Stable for one machine registering one body: a lost answer or a lost state directory
    replays the same host; a changed body (another --reserved-mib) is a new request."""
    identity = body.get("external_id") or os.uname().nodename
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(f"{identity}\0{canonical}".encode()).hexdigest()
    return "nb-agent-" + digest[:40]


@dataclass(frozen=True)
class Registered:
    host_id: str
    host_name: str
    agent_token: str
    adopted: bool


def register(admin: Client, body: dict[str, Any], *, refused: bool = False) -> Registered:
    """Create the host, or adopt this machine's when the create conflicts with it. `refused`:
    the agent registers again because its token was just refused."""
    try:
        created = admin.create_host(body, idempotency_key=idempotency_key(body))
    except Conflict as conflict:
        host = own_host(admin, body, conflict)
        token = admin.rotate_agent_token(host.id).agent_token
        return Registered(host.id, host.name, token, adopted=True)
    # A replay (this machine registered this body before) shows the first response's token
    # again, which may have been rotated since: when that one was just refused, or the record
    # predates kept secrets (no token), the agent takes a new one.
    shown = created.agent_token
    if shown is None or refused:
        shown = admin.rotate_agent_token(created.id).agent_token
    return Registered(created.id, created.name, shown, adopted=False)


def own_host(admin: Client, body: dict[str, Any], conflict: Conflict) -> m.HostOut:
    """The host registered for this machine, which the create ran into; Refused otherwise."""
    why = one_line(conflict)
    external_id = body.get("external_id")
    if not external_id:
        raise Refused(
            f"{why}; this agent knows no machine id to find its own host by: give it "
            "--external-id (that host's external_id) or another --name"
        )
    try:
        found = next(iter(admin.iter_hosts(external_id=external_id)), None)
    except Forbidden as exc:
        raise Refused(
            f"{why}; adopting this machine's host needs the admin role (list hosts, rotate "
            f"its agent token), the token given has not: {one_line(exc)}"
        ) from exc
    if found is None:
        raise Refused(
            f"{why}, and no host has this machine's external_id {external_id}: if that host "
            f"is this machine, set its external_id to {external_id} (PATCH /v1/hosts/ID) and "
            "start the agent again; if not, give the agent another --name"
        )
    if len(found.pnodes) != len(body["pnodes"]):
        raise Refused(
            f"host {found.name!r} has this machine's external_id but {len(found.pnodes)} "
            f"pnode(s), and this machine has {len(body['pnodes'])}: delete that host, or "
            "clear its external_id, and start the agent again"
        )
    return found
