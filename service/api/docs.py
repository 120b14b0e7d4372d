"""What the OpenAPI document teaches: a sentence per operation, who calls it with which token,
what it changes, which state transitions it causes; and one example per error status.

Kept in one table applied to the generated document (`apply`), so the routers stay thin and a
test can check that no operation is left with a generated name or without a description.
"""

from __future__ import annotations

from typing import Any

ADMIN = (
    "Toolstack: the bootstrap admin token, or an API key (`nbk_...`) whose role allows this "
    "operation (the role table in `service/api/authz.py`)."
)
KEYS = "Admin only: the bootstrap admin token or a key with the admin role."
AGENT = "The host's agent (that host's agent token, `nbh_...`)."
GUEST = "The guest's balloon driver (its guest token, `nbg_...`; it names the domain)."
PUBLIC = "Anyone, no token (probes and scrapers)."

# operationId -> (summary, description)
DOCS: dict[str, tuple[str, str]] = {
    "healthz": ("Say whether the process is up.", f"{PUBLIC} Liveness only: no database."),
    "readyz": (
        "Say whether the database answers and is migrated.",
        f"{PUBLIC} 503 until the database answers and the Alembic head is applied.",
    ),
    "metrics": (
        "Export Prometheus metrics.",
        "A viewer key or better (any API key role that reads, or the admin token); no token "
        "when the service runs with NUMA_BALLOON_PUBLIC_METRICS=true. Request counts and "
        "latencies by route template and status.",
    ),
    "ui_topology": (
        "Show the topology view.",
        f"{ADMIN} Server-rendered HTML, read-only: pnodes, memory by domain, SLIT heat maps, "
        "migrations in flight; it refreshes itself from `/ui/events` (every 30 s without).",
    ),
    "ui_events": (
        "Stream the topology view's cue to refresh.",
        f"{ADMIN} The audit log's event stream from now on, under /ui where the view's session "
        "cookie is sent (a viewer key suffices); unnamed SSE events, `id:` the seq, so a "
        "reconnect resumes with Last-Event-ID.",
    ),
    "ui_login_form": ("Show the topology view's sign-in form.", f"{PUBLIC} HTML form."),
    "ui_login": (
        "Sign in to the topology view.",
        f"{ADMIN} Sets an HttpOnly, SameSite=strict cookie scoped to /ui.",
    ),
    "observed": (
        "Report the free MiB of each pnode as the hypervisor sees it.",
        f"{AGENT} Status only: updates observed free memory and the drift flag (an event when "
        "it flips) without moving the host's ETag (422, located, for a pnode the host lacks or "
        "named twice); also the heartbeat that flags stalled "
        "balloon drivers `uncooperative` and expires migrations whose claims timed out.",
    ),
    "steps": (
        "List the pending steps this host's agent must carry out.",
        f"{AGENT} Oldest first. Each step names its `actor`: `agent` steps are acked here; "
        "`guest` steps complete when the guest reports its pools (an ack also completes them).",
    ),
    "ack": (
        "Acknowledge a step as done or failed.",
        f"{AGENT} pending -> acked | failed (a retried identical ack is a no-op). A failed step "
        "of a migration fails the migration at once (rolled back, claims released, "
        "`migration.failed` event) or, once the domain runs on the destination, records why; an "
        "acked one lets an `auto_advance` migration move on.",
    ),
    "get_cluster": (
        "Read the cluster settings and totals.",
        f"{ADMIN} Block size, worst-case template, host and domain counts, memory totals.",
    ),
    "put_cluster": (
        "Change the cluster's memory hotplug block size.",
        f"{ADMIN} Only while no domain exists (409 otherwise).",
    ),
    "patch_cluster": (
        "Change the block size or turn failover protection on or off.",
        f"{KEYS} `ha: {{host_failures, label_selector, allow_spread}}` protects the failover "
        "plan (creates, target raises, migration starts and hosts leaving service that break "
        "it are refused with 409 `/problems/would-break-failover-plan`); `ha: null` turns it "
        "off. Turning it on while the plan does not hold is allowed and flagged `overcommitted`.",
    ),
    "failover_plan": (
        "Say whether every protected domain restarts, with its vnodes, after any r host failures.",
        f"{ADMIN} Changes nothing. Each vnode must fit one pnode of an active survivor (unless "
        "`allow_spread`), survivors squeezed to dynamic_min at most; `exact` when every "
        "scenario was checked, else a bound that never claims tolerated wrongly; "
        "`max_host_failures` by galloping and bisection. docs/failover.md.",
    ),
    "fail_host": (
        "Declare a host failed and restart its protected domains elsewhere.",
        f"{KEYS} The host goes offline, its migrations are aborted, its protected domains "
        "become `restarting` on the plan's hosts (backing there, a `start` step for that "
        "agent); those that cannot restart on free memory are listed with the reason. Safe to "
        "call again: nothing is placed twice.",
    ),
    "get_template": ("Read the stored worst-case virtual topology.", f"{ADMIN} 404 until derived."),
    "post_template": (
        "Derive and store the virtual topology that covers every host.",
        f"{ADMIN} Domains created with `template: worst-case` get it, so they can run anywhere.",
    ),
    "list_domains": (
        "List domains, filtered by host, name, external id or labels.",
        f"{ADMIN} Paginated. `?label=k=v` repeats, all must match; unknown parameters are 422.",
    ),
    "create_domain": (
        "Create a domain and place it on a host.",
        f"{ADMIN} Three topology forms: `vnodes`, `template` or `vnode_count` + `vcpus`. "
        "Pinned (`host_id`) or the best active host; writes backing and per-pnode accounting "
        "atomically. A 409 states MiB, `max_feasible_mib`, the best hosts with their reasons "
        "and, when a squeeze would admit it, which host and how much. Returns the guest token "
        "once. `Idempotency-Key` makes retries safe.",
    ),
    "get_domain": ("Read a domain.", f"{ADMIN} ETag = version: it moves only with spec."),
    "get_domain_by_name": (
        "Read a domain by its name.",
        f"{ADMIN} The same as by id, for callers that keep names.",
    ),
    "patch_domain": (
        "Set a domain's labels or external id.",
        f"{ADMIN} Spec: the version/ETag moves; `If-Match` guards it (412).",
    ),
    "delete_domain": (
        "Destroy a domain and free its memory.",
        f"{ADMIN} Refused (409) while it migrates; revokes its guest token.",
    ),
    "put_target": (
        "Set a domain's balloon target.",
        f"{ADMIN} Per-vnode targets follow the policy within the host's free memory; queues the "
        "guest's plug/unplug/balloon steps. 409 with `max_feasible_mib` when it does not fit. "
        "Guest and agent reports never move the ETag, so `If-Match` fails only on spec changes.",
    ),
    "rotate_guest_token": (
        "Rotate a guest's token.",
        f"{ADMIN} The old token stops working at once; the new one is shown once.",
    ),
    "get_placements": (
        "Rank the active hosts for an existing domain.",
        f"{ADMIN} Its own host counts its memory as free. `?limit=` (default 10).",
    ),
    "export": (
        "Export a domain's vNUMA configuration for xl, libvirt or xenstore.",
        f"{ADMIN} Text; 409 when the backing spreads a vnode over pnodes xl cannot express. "
        "`libvirt-domain` has no boot source, console, disk or network unless asked: "
        "`domain_type=qemu` (QEMU's emulator where KVM is unusable), a direct kernel boot "
        "(`kernel`, `initrd`, `cmdline`) and `serial_log` (the first serial port to a file) add "
        "what a first boot needs; these options go with `libvirt-domain` only (422 otherwise).",
    ),
    "list_events": (
        "List audit events after a sequence number, or wait for the next one.",
        f"{ADMIN} Every state change, who and what, before/after. `?wait=S` (<= 60) answers as "
        "soon as a matching event exists, else an empty page after S seconds; waiting holds "
        "no database connection and sees other replicas' writes.",
    ),
    "stream_events": (
        "Stream audit events as Server-Sent Events.",
        f"{ADMIN} `text/event-stream`; `id:` is the seq, `event:` the action. Reconnect with "
        "`Last-Event-ID` to resume; filters as on the list. Holds no database connection "
        "while idle.",
    ),
    "topology": (
        "Read the guest's own virtual topology.",
        f"{GUEST} Vnodes, vCPUs, virtual distances, memory ranges; never a pnode or a host.",
    ),
    "balloon": (
        "Read the guest's balloon targets and pending pool operations.",
        f"{GUEST} Per-vnode targets and the plug/unplug/balloon operations to carry out.",
    ),
    "report": (
        "Report each pool's actual size.",
        f"{GUEST} Status only: never moves the domain's ETag. Completes pool steps the report "
        "shows done (which may let an `auto_advance` migration move on); progress clears the "
        "`uncooperative` flag.",
    ),
    "list_hosts": (
        "List hosts with their free memory, filtered by name, external id or labels.",
        f"{ADMIN} Each item carries per-pnode and total capacity, allocated, claimed and free "
        "MiB, and an evacuation's progress. Unknown parameters are 422.",
    ),
    "create_host": (
        "Register a host with its NUMA topology.",
        f"{ADMIN} Validates the SLIT; returns the agent token once. `Idempotency-Key` makes "
        "retries safe.",
    ),
    "get_host": ("Read a host.", f"{ADMIN} ETag = version: agent reports never move it."),
    "get_host_by_name": ("Read a host by its name.", f"{ADMIN} The same as by id."),
    "patch_host": (
        "Change a host's state, labels or external id.",
        f"{ADMIN} active | maintenance | offline; back to active ends an evacuation. `If-Match` "
        "guards it (412).",
    ),
    "delete_host": (
        "Remove a host.",
        f"{ADMIN} 204 when nothing uses it; 409 while domains, claims or migrations do.",
    ),
    "get_accounting": (
        "Read a host's per-pnode accounting and every domain's backing.",
        f"{ADMIN} Capacity, allocated, claimed, free and observed free MiB per pnode.",
    ),
    "rotate_agent_token": (
        "Rotate a host agent's token.",
        f"{ADMIN} The old token stops working at once; the new one is shown once.",
    ),
    "post_rebalance": (
        "Move memory blocks so guests' memory sits where they expect it.",
        f"{ADMIN} AutoNUMA within a MiB budget; queues the block moves for the agent "
        "(`dry_run` changes nothing).",
    ),
    "post_squeeze": (
        "Free memory on a host by lowering its domains' targets.",
        f"{ADMIN} Per pnode or in total, inside each domain's dynamic range, stalled drivers "
        "held; decreases first. 409 with `max_feasible_mib` (`dry_run` changes nothing).",
    ),
    "list_migrations": ("List migrations, by domain or state.", f"{ADMIN} Paginated."),
    "start": (
        "Start a migration by claiming destination memory.",
        f"{ADMIN} Claims per pnode atomically or 409; state `planned`. With `auto_advance` the "
        "service advances each phase as soon as its steps are acknowledged (planned -> "
        "preparing at once); watch `GET /v1/events?subject_id=<id>&wait=`.",
    ),
    "plan": (
        "Plan a migration without reserving anything.",
        f"{ADMIN} Mapping, pool levels, ordered steps, distortion before/after.",
    ),
    "get_migration": (
        "Read a migration with its steps and claims.",
        f"{ADMIN} Each step names its `actor` (service | agent | guest) and `host_id`.",
    ),
    "advance": (
        "Move a migration to its next phase.",
        f"{ADMIN} planned -> preparing -> migrating -> settling -> completed, each once the "
        "phase's steps are acknowledged; the 409 lists every pending step with op, vnode, "
        "actor and host.",
    ),
    "abort": (
        "Abort a migration, or record where its domain runs.",
        f"{ADMIN} Before the domain can have moved (planned, preparing) it releases the claims "
        "and restores the source pools. In migrating the live migration may already have run: "
        'unless the migrate step was acknowledged as failed, the body must say `{"runs_on": '
        '"source"}` (roll back) or `"destination"` (record the move; the migration settles '
        "there); until then the claims stay held. 409 once settling.",
    ),
    "batch_report": (
        "Report a host's free memory and every domain's pool sizes in one request.",
        f"{AGENT} One request per host per interval: free MiB per pnode and, per domain on the "
        "host, each vnode's actual size as the hypervisor sees it. Status only: no version or "
        "ETag moves; pool steps whose target is reached complete; ids numa-balloon does not "
        "manage and domains migrating to or from here are listed as unknown. 422 (located) for "
        "a pnode or vnode named twice or unknown, or a size above its vnode's span; 409 with "
        "`foreign_domain_ids` for a domain of another host not migrating to or from here. "
        "Nothing is written when refused.",
    ),
    "ui_logout": (
        "Sign out of the topology view.",
        "The signed-in browser (its session cookie, no token needed): clears the cookie.",
    ),
    "create_api_key": (
        "Create a named API key with one role.",
        f"{KEYS} The secret (`nbk_...`) is in this response only; it is stored as a digest. "
        "Roles: admin, operator, scheduler, enroll, viewer. `Idempotency-Key` makes retries "
        "safe: a replay shows the same secret (kept sealed under the key for its window).",
    ),
    "list_api_keys": ("List the API keys (never their secrets).", f"{KEYS} Paged."),
    "get_api_key": ("Read one API key (never its secret).", f"{KEYS}"),
    "revoke_api_key": (
        "Revoke an API key.",
        f"{KEYS} It stops working on the next request, on every replica; its name stays taken "
        "so `key:<name>` in the audit log always means one key.",
    ),
    "rotate_api_key": (
        "Replace an API key's secret.",
        f"{KEYS} Same name and role; the old secret stops working at once; the new one is in "
        "this response only.",
    ),
    "evacuate": ("Drain a host onto the other hosts.", ""),
    "preview": ("Rank the hosts for a domain that does not exist yet.", ""),
}

ERROR_EXAMPLES: dict[str, dict[str, Any]] = {
    "429": {
        "type": "/problems/too-many-requests",
        "title": "Too many requests; slow down",
        "status": 429,
        "detail": "key 'scheduler-1' is over 100 requests/s; retry after the Retry-After delay",
    },
    "401": {
        "type": "/problems/unauthorized",
        "title": "Missing or invalid bearer token",
        "status": 401,
        "detail": "send 'Authorization: Bearer <token>'",
    },
    "403": {
        "type": "/problems/forbidden",
        "title": "Forbidden",
        "status": 403,
        "detail": "a guest token cannot use the toolstack API",
    },
    "404": {
        "type": "/problems/not-found",
        "title": "No such resource",
        "status": 404,
        "detail": "no host with id 6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70",
    },
    "409": {
        "type": "/problems/infeasible",
        "title": "Not enough memory to do that",
        "status": 409,
        "detail": "host compute-07: needs 8192 MiB, host has 2048 MiB free",
        "max_feasible_mib": 2048,
    },
    "412": {
        "type": "/problems/precondition-failed",
        "title": "If-Match does not match the current version",
        "status": 412,
        "detail": 'If-Match "1" does not match the current ETag "2"',
        "current_etag": '"2"',
    },
    "413": {
        "type": "/problems/payload-too-large",
        "title": "Request body too large",
        "status": 413,
        "detail": "the body exceeds 1048576 bytes",
    },
    "422": {
        "type": "/problems/validation-error",
        "title": "The request is not valid",
        "status": 422,
        "detail": "1 invalid field(s): body.memory.target_mib",
        "errors": [{"loc": ["body", "memory", "target_mib"], "msg": "must lie in [4096, 8192]"}],
    },
}


def apply(schema: dict[str, Any], *, public_metrics: bool = False) -> None:
    """Set summaries and descriptions from DOCS, and a per-status example on every problem.
    With `public_metrics`, /metrics takes a token or none (an empty security requirement)."""
    for item in schema.get("paths", {}).values():
        for op in item.values():
            if op.get("operationId") == "metrics" and public_metrics:
                op["security"] = [*op.get("security", []), {}]
            summary, description = DOCS.get(op.get("operationId", ""), (None, ""))
            if summary is not None:
                op["summary"] = summary
            if description and not op.get("description"):
                op["description"] = description
            for status, response in op.get("responses", {}).items():
                content = response.get("content", {}).get("application/problem+json")
                if content is not None and status in ERROR_EXAMPLES:
                    content["example"] = ERROR_EXAMPLES[status]
