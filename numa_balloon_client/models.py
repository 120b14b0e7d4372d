"""The API's pydantic models, generated from openapi/openapi.json (`make client`); do not edit."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, RootModel, StringConstraints


class AbortRequest(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    runs_on: Annotated[
        Literal["source", "destination"] | None,
        Field(
            description="Where the domain runs now. Required to abort a migration in `migrating` (the live migration may have run) unless its migrate step was acknowledged as failed: `source` rolls back; `destination` records the move and settles there",
            title="Runs On",
        ),
    ] = None


class Detail(RootModel[str]):
    root: Annotated[str, Field(max_length=2000, title="Detail")]


class AckIn(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    detail: Annotated[Detail | None, Field(title="Detail")] = None
    ok: Annotated[bool, Field(title="Ok")]


class AgentToken(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    agent_token: Annotated[str, Field(title="Agent Token")]
    host_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Host Id"
        ),
    ]


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    expires_at: Annotated[
        AwareDatetime | None,
        Field(
            description="When the key stops working (with a time zone); none: never",
            title="Expires At",
        ),
    ] = None
    name: Annotated[
        str,
        Field(
            description="1-64 characters: letters, digits, '.', '_', '-' (starting with a letter or digit); the audit log names the key `key:<name>`",
            examples=["orchestrator"],
            max_length=64,
            min_length=1,
            pattern="^[A-Za-z0-9][A-Za-z0-9._-]*$",
            title="Name",
        ),
    ]
    role: Annotated[
        Literal["admin", "operator", "scheduler", "enroll", "viewer"], Field(title="Role")
    ]


class ApiKeyCreated(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    created_at: Annotated[AwareDatetime, Field(title="Created At")]
    created_by: Annotated[str, Field(title="Created By")]
    expires_at: Annotated[AwareDatetime | None, Field(title="Expires At")]
    id: Annotated[
        str,
        Field(description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Id"),
    ]
    name: Annotated[str, Field(title="Name")]
    revoked_at: Annotated[AwareDatetime | None, Field(title="Revoked At")]
    role: Annotated[
        Literal["admin", "operator", "scheduler", "enroll", "viewer"], Field(title="Role")
    ]
    rotated_at: Annotated[AwareDatetime | None, Field(title="Rotated At")]
    secret: Annotated[
        str,
        Field(
            description="The bearer secret (`nbk_...`): shown only in this response; the service keeps its SHA-256 digest",
            title="Secret",
        ),
    ]


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    created_at: Annotated[AwareDatetime, Field(title="Created At")]
    created_by: Annotated[str, Field(title="Created By")]
    expires_at: Annotated[AwareDatetime | None, Field(title="Expires At")]
    id: Annotated[
        str,
        Field(description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Id"),
    ]
    name: Annotated[str, Field(title="Name")]
    revoked_at: Annotated[AwareDatetime | None, Field(title="Revoked At")]
    role: Annotated[
        Literal["admin", "operator", "scheduler", "enroll", "viewer"], Field(title="Role")
    ]
    rotated_at: Annotated[AwareDatetime | None, Field(title="Rotated At")]


class BlockMoveOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    domain_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Domain Id"
        ),
    ]
    from_pnode: Annotated[int, Field(title="From Pnode")]
    from_vnode: Annotated[int, Field(title="From Vnode")]
    mib: Annotated[int, Field(title="Mib")]
    pfn_ranges: Annotated[list[list[int]], Field(title="Pfn Ranges")]
    to_pnode: Annotated[int, Field(title="To Pnode")]
    to_vnode: Annotated[int, Field(title="To Vnode")]


class ClaimOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    expires_at: Annotated[
        AwareDatetime | None,
        Field(
            description="When the lease of a planned migration's claim ends; null: held until the migration ends (it is past planned: the guest may be using this memory)",
            title="Expires At",
        ),
    ]
    host_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Host Id"
        ),
    ]
    mib: Annotated[int, Field(title="Mib")]
    pnode: Annotated[int, Field(title="Pnode")]


class BlockMib(RootModel[int]):
    root: Annotated[
        int, Field(description="As PUT /v1/cluster", ge=1, le=1048576, title="Block Mib")
    ]


class ClusterPut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    block_mib: Annotated[
        int,
        Field(
            description="Memory hotplug block, a power of two (MiB)",
            ge=1,
            le=1048576,
            title="Block Mib",
        ),
    ]


class DomainBacking(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    backing_mib: Annotated[
        list[list[int]], Field(description="vnode x pnode, MiB", title="Backing Mib")
    ]
    charged_mib: Annotated[
        list[list[int]],
        Field(
            description="vnode x pnode, MiB counted against the pnode: the backing, or the size the guest reports for the vnode when it holds more than its target (on the vnode's home)",
            title="Charged Mib",
        ),
    ]
    domain_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Domain Id"
        ),
    ]
    held_over_target_mib: Annotated[
        int,
        Field(
            description="Σ charged_mib - Σ backing_mib: memory the guest still holds above its target",
            title="Held Over Target Mib",
        ),
    ]


class BlockMib1(RootModel[int]):
    root: Annotated[
        int,
        Field(
            description="The guest's memory hotplug block (power of two); default the cluster's",
            ge=1,
            le=1048576,
            title="Block Mib",
        ),
    ]


class ExternalId(RootModel[str]):
    root: Annotated[
        str,
        Field(
            description="The orchestrator's own id (a Nova UUID, a Kubernetes node name); unique",
            examples=["compute-07.rack12"],
            max_length=255,
            min_length=1,
            pattern="^[^\\x00-\\x1f\\x7f]+$",
            title="External Id",
        ),
    ]


class HostId(RootModel[str]):
    root: Annotated[
        str,
        Field(
            description="UUID",
            examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"],
            pattern="^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
            title="Host Id",
        ),
    ]


class Vcpus(RootModel[int]):
    root: Annotated[
        int,
        Field(
            description="With template or vnode_count: vCPU count, spread evenly over the vnodes",
            ge=1,
            le=4096,
            title="Vcpus",
        ),
    ]


class VnodeCount(RootModel[int]):
    root: Annotated[
        int,
        Field(
            description="Shorthand (one of three forms): this many vnodes of equal size and vCPU count, with `vcpus`; virtual distances from the host given in host_id (vnode v on pnode v*n/k, when k <= n pnodes), else 10 local / 20 remote",
            ge=1,
            le=32,
            title="Vnode Count",
        ),
    ]


class VnodeSizeMib(RootModel[int]):
    root: Annotated[
        int,
        Field(
            description="With template or vnode_count: every vnode's span (default dynamic_max / k, block-aligned)",
            ge=1,
            le=2147483648,
            title="Vnode Size Mib",
        ),
    ]


class VnodeTargetsMibItem(RootModel[int]):
    root: Annotated[int, Field(ge=0, le=2147483648)]


class VnodeTargetsMib(RootModel[list[VnodeTargetsMibItem]]):
    root: Annotated[
        list[VnodeTargetsMibItem],
        Field(
            description="Per-vnode targets (policy explicit)",
            max_length=32,
            title="Vnode Targets Mib",
        ),
    ]


class DomainPatch(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    external_id: Annotated[
        ExternalId | None, Field(description="null clears it", title="External Id")
    ] = None
    labels: Annotated[
        dict[
            Annotated[
                str,
                StringConstraints(
                    pattern=r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,126}[A-Za-z0-9])?$",
                    min_length=1,
                    max_length=128,
                ),
            ],
            str,
        ]
        | None,
        Field(description="Replaces every label", title="Labels"),
    ] = None


class DriftPnode(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    accounted_free_mib: Annotated[int, Field(title="Accounted Free Mib")]
    drift_mib: Annotated[
        int | None,
        Field(description="observed - accounted; large values are flagged", title="Drift Mib"),
    ]
    index: Annotated[int, Field(title="Index")]
    observed_free_mib: Annotated[int | None, Field(title="Observed Free Mib")]


class EvacuateRequest(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    auto_advance: Annotated[
        bool | None,
        Field(
            description="Every migration advances on its own as its steps are acknowledged",
            title="Auto Advance",
        ),
    ] = False
    strategy: Annotated[
        Literal["rebalance", "replug"] | None,
        Field(description="For every migration started", title="Strategy"),
    ] = "rebalance"


class Evacuation(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    domains_remaining: Annotated[
        int, Field(description="Domains still on the host", title="Domains Remaining")
    ]
    done: Annotated[bool, Field(description="No domain is left on the host", title="Done")]
    migrations_in_flight: Annotated[
        int,
        Field(description="Migrations off this host not yet ended", title="Migrations In Flight"),
    ]
    requested_at: Annotated[AwareDatetime, Field(title="Requested At")]


class EventOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    action: Annotated[str, Field(title="Action")]
    actor: Annotated[str, Field(title="Actor")]
    after: Annotated[dict[str, Any] | None, Field(title="After")]
    at: Annotated[AwareDatetime, Field(title="At")]
    before: Annotated[dict[str, Any] | None, Field(title="Before")]
    seq: Annotated[int, Field(title="Seq")]
    subject_id: Annotated[str | None, Field(title="Subject Id")]
    subject_type: Annotated[str, Field(title="Subject Type")]


class FailHost(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    reason: Annotated[str | None, Field(max_length=500, min_length=1, title="Reason")] = (
        "declared failed by an operator"
    )


class LabelSelector(RootModel[str]):
    root: Annotated[
        str,
        Field(
            description="Which domains are protected: `key=value` pairs separated by commas, every one must match (`ha=true,tier=gold`); absent or empty: every domain that runs on a host",
            max_length=1024,
            title="Label Selector",
        ),
    ]


class FailoverPlanRequest(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    allow_spread: Annotated[
        bool | None,
        Field(
            description="A restart may spread a vnode's memory over several pnodes of its new host (otherwise each vnode must fit on one pnode)",
            title="Allow Spread",
        ),
    ] = False
    host_failures: Annotated[
        int | None,
        Field(
            description="r: every set of this many hosts failing at once is a scenario",
            ge=0,
            le=1024,
            title="Host Failures",
        ),
    ] = 1
    label_selector: Annotated[
        LabelSelector | None,
        Field(
            description="Which domains are protected: `key=value` pairs separated by commas, every one must match (`ha=true,tier=gold`); absent or empty: every domain that runs on a host",
            title="Label Selector",
        ),
    ] = None
    restarts: Annotated[
        bool | None,
        Field(
            description="List where each host's protected domains restart when it fails alone",
            title="Restarts",
        ),
    ] = True


class GuestMemRange(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    end_pfn: Annotated[int, Field(title="End Pfn")]
    start_pfn: Annotated[int, Field(title="Start Pfn")]


class GuestOperation(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    mib: Annotated[int, Field(title="Mib")]
    op: Annotated[Literal["plug", "unplug", "balloon"], Field(title="Op")]
    pfn_ranges: Annotated[
        list[list[int]],
        Field(description="Guest PFN [start, end) of whole blocks", title="Pfn Ranges"),
    ]
    target_mib: Annotated[
        int | None, Field(description="The pool's target once this is done", title="Target Mib")
    ]
    vnode: Annotated[int, Field(title="Vnode")]


class GuestPool(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    actual_mib: Annotated[int | None, Field(title="Actual Mib")]
    index: Annotated[int, Field(title="Index")]
    plugged_blocks: Annotated[int, Field(title="Plugged Blocks")]
    target_mib: Annotated[int, Field(title="Target Mib")]


class GuestToken(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    domain_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Domain Id"
        ),
    ]
    guest_token: Annotated[str, Field(title="Guest Token")]


class GuestVnode(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    distances: Annotated[
        list[int], Field(description="Virtual distances (the guest's SLIT row)", title="Distances")
    ]
    index: Annotated[int, Field(title="Index")]
    memranges: Annotated[list[GuestMemRange], Field(title="Memranges")]
    size_mib: Annotated[int, Field(title="Size Mib")]
    vcpus: Annotated[list[int], Field(title="Vcpus")]


class HaSettings(BaseModel):
    """
    Failover protection: what `PATCH /v1/cluster` sets under `ha`.
    """

    model_config = ConfigDict(
        extra="allow",
    )
    allow_spread: Annotated[bool | None, Field(title="Allow Spread")] = False
    host_failures: Annotated[int | None, Field(ge=0, le=1024, title="Host Failures")] = 1
    label_selector: Annotated[
        LabelSelector | None,
        Field(
            description="Which domains are protected: `key=value` pairs separated by commas, every one must match (`ha=true,tier=gold`); absent or empty: every domain that runs on a host",
            title="Label Selector",
        ),
    ] = None


class HostAgent(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    connected: Annotated[
        bool | None,
        Field(
            description="Whether the host agent's lease is held; false once it lapsed (the agent is lost: no domain is placed or migrated here until it renews); null while the agent never took a lease (not judged)",
            title="Connected",
        ),
    ]
    last_report_at: Annotated[
        AwareDatetime | None,
        Field(description="The agent's last report (batch or observed)", title="Last Report At"),
    ]
    lease_expires_at: Annotated[
        AwareDatetime | None,
        Field(description="When the agent's lease runs out", title="Lease Expires At"),
    ]


class Distance(RootModel[list[int]]):
    root: Annotated[list[int], Field(max_length=64)]


class HostPatch(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    external_id: Annotated[
        ExternalId | None, Field(description="null clears it", title="External Id")
    ] = None
    labels: Annotated[
        dict[
            Annotated[
                str,
                StringConstraints(
                    pattern=r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,126}[A-Za-z0-9])?$",
                    min_length=1,
                    max_length=128,
                ),
            ],
            str,
        ]
        | None,
        Field(description="Replaces every label", title="Labels"),
    ] = None
    state: Annotated[
        Literal["active", "maintenance", "offline"] | None,
        Field(
            description="active: takes new domains; maintenance: keeps its domains, takes none (evacuate moves them); offline: takes none. Back to active ends an evacuation."
        ),
    ] = None


class Seq(RootModel[int]):
    root: Annotated[
        int,
        Field(
            description="The agent's renewals counted from 0 since it started: 0, or a count that went back, tells the service the agent restarted (a full report is then wanted)",
            ge=0,
            le=4611686018427388000,
            title="Seq",
        ),
    ]


class LeaseIn(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    seq: Annotated[
        Seq | None,
        Field(
            description="The agent's renewals counted from 0 since it started: 0, or a count that went back, tells the service the agent restarted (a full report is then wanted)",
            title="Seq",
        ),
    ] = None


class LeaseOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    expires_at: Annotated[
        AwareDatetime,
        Field(
            description="Renew before this (NUMA_BALLOON_AGENT_LEASE_S after now); past it the host's agent is judged lost: no domain is placed or migrated to the host until it renews",
            title="Expires At",
        ),
    ]
    host_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Host Id"
        ),
    ]
    report: Annotated[
        bool,
        Field(
            description="The service wants a full batch report now: after a restart of either side, a return from lost, while a step is pending or the host is flagged for drift, and every NUMA_BALLOON_AGENT_FULL_REPORT_S",
            title="Report",
        ),
    ]
    steps_pending: Annotated[
        bool, Field(description="Steps are pending on this host: fetch them", title="Steps Pending")
    ]


class MemRange(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    end_pfn: Annotated[int, Field(title="End Pfn")]
    start_pfn: Annotated[int, Field(title="Start Pfn")]


class MemoryIn(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    dynamic_max_mib: Annotated[int, Field(ge=1, le=2147483648, title="Dynamic Max Mib")]
    dynamic_min_mib: Annotated[int, Field(ge=0, le=2147483648, title="Dynamic Min Mib")]
    target_mib: Annotated[
        int,
        Field(
            description="Initial balloon target; below static max = pre-ballooned",
            ge=0,
            le=2147483648,
            title="Target Mib",
        ),
    ]


class MemoryOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    dynamic_max_mib: Annotated[int, Field(title="Dynamic Max Mib")]
    dynamic_min_mib: Annotated[int, Field(title="Dynamic Min Mib")]
    static_max_mib: Annotated[int, Field(title="Static Max Mib")]
    target_mib: Annotated[int, Field(title="Target Mib")]


class MemoryTotals(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    allocated_mib: Annotated[int, Field(title="Allocated Mib")]
    capacity_mib: Annotated[int, Field(title="Capacity Mib")]
    claimed_mib: Annotated[int, Field(title="Claimed Mib")]
    free_mib: Annotated[int, Field(title="Free Mib")]


class MigrationStepOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    actor: Annotated[
        Literal["service", "agent", "guest"],
        Field(
            description="Who completes the step: the service itself (claims), the host agent (migrate, release, rebalance moves; it acks them) or the guest's balloon driver (plug, unplug, balloon; its report completes them, an agent ack also does)",
            title="Actor",
        ),
    ]
    detail: Annotated[str | None, Field(title="Detail")]
    host_id: Annotated[
        str,
        Field(
            description="The host whose agent sees (and, for agent steps, acks) it",
            examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"],
            title="Host Id",
        ),
    ]
    id: Annotated[
        str,
        Field(description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Id"),
    ]
    mib: Annotated[int, Field(title="Mib")]
    op: Annotated[str, Field(title="Op")]
    phase: Annotated[str, Field(title="Phase")]
    pnode: Annotated[int | None, Field(title="Pnode")]
    seq: Annotated[int, Field(title="Seq")]
    state: Annotated[str, Field(title="State")]
    target_mib: Annotated[int | None, Field(title="Target Mib")]
    vnode: Annotated[int | None, Field(title="Vnode")]


class ObservedOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    drift_flagged: Annotated[bool, Field(title="Drift Flagged")]
    host_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Host Id"
        ),
    ]
    pnodes: Annotated[list[DriftPnode], Field(title="Pnodes")]
    threshold_mib: Annotated[int, Field(title="Threshold Mib")]


class ObservedPnode(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    free_mib: Annotated[int, Field(ge=0, le=2147483648, title="Free Mib")]
    index: Annotated[int, Field(ge=0, lt=64, title="Index")]


class PageApiKeyOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    items: Annotated[list[ApiKeyOut], Field(title="Items")]
    next_cursor: Annotated[
        str | None,
        Field(
            description="Pass as ?cursor= to get the next page; null on the last page",
            title="Next Cursor",
        ),
    ] = None


class PageEventOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    items: Annotated[list[EventOut], Field(title="Items")]
    next_cursor: Annotated[
        str | None,
        Field(
            description="Pass as ?cursor= to get the next page; null on the last page",
            title="Next Cursor",
        ),
    ] = None


class PlacementOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    distortion: Annotated[float | None, Field(title="Distortion")]
    feasible: Annotated[bool, Field(title="Feasible")]
    free_mib: Annotated[int, Field(description="The host's free MiB, all pnodes", title="Free Mib")]
    host_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Host Id"
        ),
    ]
    host_name: Annotated[str, Field(title="Host Name")]
    mapping: Annotated[list[int], Field(description="Home pnode per vnode", title="Mapping")]
    max_feasible_mib: Annotated[
        int,
        Field(
            description="The largest target this host could back now with this mapping (at most dynamic_max_mib)",
            title="Max Feasible Mib",
        ),
    ]
    reason: Annotated[str, Field(title="Reason")]
    score: Annotated[float | None, Field(title="Score")]
    spread: Annotated[bool, Field(title="Spread")]


class PlacementPreview(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    hosts: Annotated[
        list[PlacementOut],
        Field(description="Best first; nothing was created or claimed", title="Hosts"),
    ]


class Name(RootModel[str]):
    root: Annotated[
        str,
        Field(
            description="1-255 characters, stored in Unicode NFC form; no '/', control, format (e.g. RTL override, zero-width), surrogate, private-use or unassigned characters; not blank",
            max_length=255,
            min_length=1,
            title="Name",
        ),
    ]


class VnodeTargetsMib1Item(RootModel[int]):
    root: Annotated[int, Field(ge=0, le=2147483648)]


class VnodeTargetsMib1(RootModel[list[VnodeTargetsMib1Item]]):
    root: Annotated[
        list[VnodeTargetsMib1Item],
        Field(
            description="Per-vnode targets (policy explicit)",
            max_length=32,
            title="Vnode Targets Mib",
        ),
    ]


class Placements(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    domain_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Domain Id"
        ),
    ]
    hosts: Annotated[list[PlacementOut], Field(title="Hosts")]


class PlanStepOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    host: Annotated[Literal["source", "destination"], Field(title="Host")]
    host_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Host Id"
        ),
    ]
    mib: Annotated[int, Field(title="Mib")]
    op: Annotated[
        Literal["claim", "balloon", "unplug", "plug", "migrate", "release"], Field(title="Op")
    ]
    pfn_ranges: Annotated[list[list[int]], Field(title="Pfn Ranges")]
    phase: Annotated[
        Literal["claim", "prepare", "migrate", "settle", "release"], Field(title="Phase")
    ]
    pnode: Annotated[int | None, Field(title="Pnode")]
    seq: Annotated[int, Field(title="Seq")]
    target_mib: Annotated[int | None, Field(title="Target Mib")]
    vnode: Annotated[int | None, Field(title="Vnode")]


class PnodeAccounting(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    allocated_mib: Annotated[
        int, Field(description="Σ of the domains' charged_mib on this pnode", title="Allocated Mib")
    ]
    capacity_mib: Annotated[int, Field(title="Capacity Mib")]
    claimed_mib: Annotated[
        int,
        Field(
            description="Σ of the live claims (lapsed leases no longer count)", title="Claimed Mib"
        ),
    ]
    free_mib: Annotated[
        int, Field(description="capacity_mib - allocated_mib - claimed_mib", title="Free Mib")
    ]
    index: Annotated[int, Field(title="Index")]
    observed_free_mib: Annotated[int | None, Field(title="Observed Free Mib")]


class PnodeIn(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    cpus: Annotated[int, Field(ge=1, le=4096, title="Cpus")]
    memory_mib: Annotated[int, Field(ge=1, le=2147483648, title="Memory Mib")]
    reserved_mib: Annotated[
        int | None,
        Field(
            description="Held back for the hypervisor and dom0; must be below memory_mib",
            ge=0,
            le=2147483648,
            title="Reserved Mib",
        ),
    ] = 0


class PnodeOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    allocated_mib: Annotated[
        int, Field(description="Backing of the domains on this pnode", title="Allocated Mib")
    ]
    capacity_mib: Annotated[int, Field(title="Capacity Mib")]
    claimed_mib: Annotated[
        int,
        Field(description="Reserved for migrations and creations in flight", title="Claimed Mib"),
    ]
    cpus: Annotated[int, Field(title="Cpus")]
    free_mib: Annotated[
        int,
        Field(
            description="capacity - allocated - claimed: what placement may use", title="Free Mib"
        ),
    ]
    index: Annotated[int, Field(title="Index")]
    memory_mib: Annotated[int, Field(title="Memory Mib")]
    reserved_mib: Annotated[int, Field(title="Reserved Mib")]


class VisibleMib(RootModel[int]):
    root: Annotated[
        int,
        Field(
            description="What the guest kernel shows of the node: its MemTotal (optional)",
            ge=0,
            le=2147483648,
            title="Visible Mib",
        ),
    ]


class PoolReport(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    actual_mib: Annotated[
        int,
        Field(
            description="What the pool holds: the node's memory blocks online, or offline and still the device's (the hypervisor's view once a change is done)",
            ge=0,
            le=2147483648,
            title="Actual Mib",
        ),
    ]
    index: Annotated[int, Field(ge=0, lt=32, title="Index")]
    visible_mib: Annotated[
        VisibleMib | None,
        Field(
            description="What the guest kernel shows of the node: its MemTotal (optional)",
            title="Visible Mib",
        ),
    ] = None


class RebalanceOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    distortion_after: Annotated[float, Field(title="Distortion After")]
    distortion_before: Annotated[float, Field(title="Distortion Before")]
    dry_run: Annotated[bool, Field(title="Dry Run")]
    host_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Host Id"
        ),
    ]
    moved_mib: Annotated[int, Field(title="Moved Mib")]
    moves: Annotated[list[BlockMoveOut], Field(title="Moves")]
    remote_fraction_after: Annotated[float, Field(title="Remote Fraction After")]
    remote_fraction_before: Annotated[float, Field(title="Remote Fraction Before")]


class RebalanceRequest(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    budget_mib: Annotated[
        int,
        Field(
            description="At most this many MiB move between (vnode, pnode) pairs",
            ge=0,
            le=2147483648,
            title="Budget Mib",
        ),
    ]
    dry_run: Annotated[bool | None, Field(title="Dry Run")] = False


class RecoveryRestart(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    domain_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Domain Id"
        ),
    ]
    host_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Host Id"
        ),
    ]
    state: Annotated[
        str,
        Field(
            description="The domain's state now: restarting until the destination's agent acknowledges its start step, then running (failed if it could not)",
            title="State",
        ),
    ]


class ReportVnode(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    actual_mib: Annotated[int, Field(ge=0, le=2147483648, title="Actual Mib")]
    index: Annotated[int, Field(ge=0, lt=32, title="Index")]


class FreeMoreMib(RootModel[int]):
    root: Annotated[
        int,
        Field(
            description="MiB to free on the whole host beyond what is free now (the accounting's free MiB at the request, plus this, are left free afterwards)",
            ge=0,
            le=2147483648,
            title="Free More Mib",
        ),
    ]


class KeepTotalFreeMib(RootModel[int]):
    root: Annotated[
        int,
        Field(
            description="MiB to leave free on the whole host afterwards",
            ge=0,
            le=2147483648,
            title="Keep Total Free Mib",
        ),
    ]


class TotalFreeMib(RootModel[int]):
    root: Annotated[
        int,
        Field(
            deprecated=True,
            description="Deprecated name of keep_total_free_mib (MiB left free on the whole host afterwards, not MiB to free)",
            ge=0,
            le=2147483648,
            title="Total Free Mib",
        ),
    ]


class SqueezeRequest(BaseModel):
    """
    What a squeeze should achieve, in exactly one form. Each says how much memory is free
    *afterwards* (capacity - claimed - allocated, as the accounting counts it), except
    ``free_more_mib``, which says how much more than is free now.
    """

    model_config = ConfigDict(
        extra="allow",
    )
    balance: Annotated[
        bool | None,
        Field(
            description="Share all free memory out (every domain toward dynamic_max)",
            title="Balance",
        ),
    ] = False
    dry_run: Annotated[
        bool | None, Field(description="Return the plan and change nothing", title="Dry Run")
    ] = False
    free_mib: Annotated[
        dict[Annotated[str, StringConstraints(pattern=r"^(0|[1-9][0-9]{0,2})$")], int] | None,
        Field(
            deprecated=True,
            description="Deprecated name of keep_free_mib (MiB left free per pnode afterwards)",
            title="Free Mib",
        ),
    ] = None
    free_more_mib: Annotated[
        FreeMoreMib | None,
        Field(
            description="MiB to free on the whole host beyond what is free now (the accounting's free MiB at the request, plus this, are left free afterwards)",
            title="Free More Mib",
        ),
    ] = None
    keep_free_mib: Annotated[
        dict[Annotated[str, StringConstraints(pattern=r"^(0|[1-9][0-9]{0,2})$")], int] | None,
        Field(
            description='MiB to leave free per pnode afterwards, keyed by pnode index: {"0": 8192}',
            title="Keep Free Mib",
        ),
    ] = None
    keep_total_free_mib: Annotated[
        KeepTotalFreeMib | None,
        Field(
            description="MiB to leave free on the whole host afterwards",
            title="Keep Total Free Mib",
        ),
    ] = None
    total_free_mib: Annotated[
        TotalFreeMib | None,
        Field(
            deprecated=True,
            description="Deprecated name of keep_total_free_mib (MiB left free on the whole host afterwards, not MiB to free)",
            title="Total Free Mib",
        ),
    ] = None


class SqueezedDomain(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    domain_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Domain Id"
        ),
    ]
    held: Annotated[
        bool,
        Field(
            description="Left out (inactive or uncooperative): held at its actual size",
            title="Held",
        ),
    ]
    phase: Annotated[
        Literal["decrease", "increase", "unchanged", "held"],
        Field(
            description="decrease | increase (only when balancing: a request to free memory never raises a target) | unchanged | held (left out; its target is not changed)",
            title="Phase",
        ),
    ]
    previous_target_mib: Annotated[int, Field(title="Previous Target Mib")]
    target_mib: Annotated[
        int,
        Field(
            description="The new target; for a held domain, the actual size it is counted at",
            title="Target Mib",
        ),
    ]
    vnode_targets_mib: Annotated[list[int], Field(title="Vnode Targets Mib")]


class StepDestination(BaseModel):
    """
    Where a migrate step takes the domain: what the source host's agent needs to build the
    destination configuration (the new vnode -> pnode binding, e.g. libvirt's <numatune>). A
    recovery's start step carries the same for the host it restarts on (this one): each vnode's
    pnode there, where its memory is charged (xl's vnuma `pnode=`).
    """

    model_config = ConfigDict(
        extra="allow",
    )
    host_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Host Id"
        ),
    ]
    host_name: Annotated[str, Field(title="Host Name")]
    nodesets: Annotated[
        list[list[int]],
        Field(
            description="per vnode, the destination pnodes that back it (its <memnode> nodeset)",
            title="Nodesets",
        ),
    ]


class StepFailure(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    attempt: Annotated[int, Field(description="The attempt that failed, from 1", title="Attempt")]
    detail: Annotated[str | None, Field(description="What the agent said", title="Detail")]
    failed_at: Annotated[AwareDatetime, Field(title="Failed At")]
    max_attempts: Annotated[int, Field(title="Max Attempts")]
    op: Annotated[str, Field(title="Op")]
    retry_at: Annotated[
        AwareDatetime | None,
        Field(description="When the next attempt is shown to agents", title="Retry At"),
    ]
    retry_step_id: Annotated[str | None, Field(title="Retry Step Id")] = None
    step_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Step Id"
        ),
    ]
    vnode: Annotated[int | None, Field(title="Vnode")]


class StepOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    actor: Annotated[
        Literal["service", "agent", "guest"],
        Field(
            description="Who completes the step: the service itself (claims), the host agent (migrate, release, rebalance moves; it acks them) or the guest's balloon driver (plug, unplug, balloon; its report completes them, an agent ack also does)",
            title="Actor",
        ),
    ]
    attempt: Annotated[
        int | None, Field(description="1, or the retry's number after failures", title="Attempt")
    ] = 1
    created_at: Annotated[AwareDatetime, Field(title="Created At")]
    destination: Annotated[
        StepDestination | None,
        Field(
            description="migrate steps: the destination and its binding; a recovery's start steps (phase restart): this host and each vnode's pnode on it"
        ),
    ] = None
    detail: Annotated[str | None, Field(title="Detail")]
    domain_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Domain Id"
        ),
    ]
    grow: Annotated[
        bool | None,
        Field(
            description="pool steps: whether the pool grows to target_mib (or shrinks)",
            title="Grow",
        ),
    ] = None
    host_id: Annotated[
        str,
        Field(
            description="The host whose agent sees this step",
            examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"],
            title="Host Id",
        ),
    ]
    id: Annotated[
        str,
        Field(description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Id"),
    ]
    mib: Annotated[int, Field(title="Mib")]
    migration_id: Annotated[str | None, Field(title="Migration Id")]
    op: Annotated[str, Field(title="Op")]
    pfn_ranges: Annotated[list[list[int]], Field(title="Pfn Ranges")]
    phase: Annotated[str, Field(title="Phase")]
    pnode: Annotated[int | None, Field(title="Pnode")]
    seq: Annotated[int, Field(title="Seq")]
    state: Annotated[str, Field(title="State")]
    target_mib: Annotated[int | None, Field(title="Target Mib")]
    vnode: Annotated[int | None, Field(title="Vnode")]


class VnodeTargetsMib2Item(RootModel[int]):
    root: Annotated[int, Field(ge=0, le=2147483648)]


class VnodeTargetsMib2(RootModel[list[VnodeTargetsMib2Item]]):
    root: Annotated[
        list[VnodeTargetsMib2Item],
        Field(
            description="Per-vnode targets (policy explicit)",
            max_length=32,
            title="Vnode Targets Mib",
        ),
    ]


class TargetPut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    policy: Annotated[
        Literal["proportional", "round-robin", "nearest", "faithful", "explicit"] | None,
        Field(description="Also switch the domain's policy"),
    ] = None
    target_mib: Annotated[int, Field(ge=0, le=2147483648, title="Target Mib")]
    vnode_targets_mib: Annotated[
        VnodeTargetsMib2 | None,
        Field(description="Per-vnode targets (policy explicit)", title="Vnode Targets Mib"),
    ] = None


class TemplateVnode(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    distances: Annotated[list[int], Field(title="Distances")]
    index: Annotated[int, Field(title="Index")]


class Unplaced(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    domain_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Domain Id"
        ),
    ]
    reason: Annotated[
        str,
        Field(
            description="Why no other host takes it (MiB figures, per host tried)", title="Reason"
        ),
    ]


class UnplacedOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    domain_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Domain Id"
        ),
    ]
    domain_name: Annotated[str, Field(title="Domain Name")]
    reason: Annotated[str, Field(title="Reason")]


class ValidationIssue(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    loc: Annotated[list[str | int], Field(title="Loc")]
    msg: Annotated[str, Field(title="Msg")]
    type: Annotated[str | None, Field(title="Type")] = None


class VnodeHome(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    pnode: Annotated[int, Field(title="Pnode")]
    vnode: Annotated[int, Field(title="Vnode")]


class Vcpu(RootModel[int]):
    root: Annotated[int, Field(ge=0, lt=4096)]


class VnodeIn(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    distances: Annotated[
        list[int],
        Field(description="This vnode's row of the virtual SLIT", max_length=32, title="Distances"),
    ]
    size_mib: Annotated[
        int,
        Field(
            description="Guest-physical span (SRAT), a multiple of block_mib",
            ge=1,
            le=2147483648,
            title="Size Mib",
        ),
    ]
    vcpus: Annotated[list[Vcpu], Field(max_length=4096, title="Vcpus")]


class VnodeOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    actual_mib: Annotated[
        int | None,
        Field(
            description="Held by the hypervisor for this vnode (boot memory + plugged blocks, or the balloon's size), as the host agent's or the guest agent's last report said; null until one reports. This is what the accounting charges.",
            title="Actual Mib",
        ),
    ]
    backing_mib: Annotated[
        list[int],
        Field(description="MiB of this vnode on each pnode of the host", title="Backing Mib"),
    ]
    distances: Annotated[list[int], Field(title="Distances")]
    guest_visible_mib: Annotated[
        int | None,
        Field(
            description="Visible to the guest: its kernel's MemTotal of this node, as the guest agent last reported it; lower than actual_mib by the kernel's own reservations and by blocks not (yet) online. null without a guest agent that reports it.",
            title="Guest Visible Mib",
        ),
    ] = None
    home_pnode: Annotated[
        int | None, Field(description="The pnode running this vnode's vCPUs", title="Home Pnode")
    ]
    index: Annotated[int, Field(title="Index")]
    memranges: Annotated[list[MemRange], Field(title="Memranges")]
    plugged_blocks: Annotated[int, Field(title="Plugged Blocks")]
    size_mib: Annotated[int, Field(title="Size Mib")]
    target_mib: Annotated[int, Field(title="Target Mib")]
    vcpus: Annotated[list[int], Field(title="Vcpus")]


class WorstCaseTemplateOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    classes: Annotated[list[int], Field(title="Classes")]
    distances: Annotated[list[list[int]], Field(title="Distances")]
    hosts_considered: Annotated[int, Field(title="Hosts Considered")]
    source_host_id: Annotated[str | None, Field(title="Source Host Id")]
    vnode_count: Annotated[int, Field(title="Vnode Count")]
    vnodes: Annotated[list[TemplateVnode], Field(title="Vnodes")]


class WorstOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    failed_host_ids: Annotated[list[str], Field(title="Failed Host Ids")]
    free_after_mib: Annotated[int, Field(title="Free After Mib")]
    proven: Annotated[
        bool, Field(description="Its stranded domains cannot be fewer", title="Proven")
    ]
    squeeze_mib: Annotated[int, Field(title="Squeeze Mib")]
    unplaced: Annotated[list[UnplacedOut], Field(title="Unplaced")]


class Accounting(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    domains: Annotated[list[DomainBacking], Field(title="Domains")]
    host_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Host Id"
        ),
    ]
    pnodes: Annotated[list[PnodeAccounting], Field(title="Pnodes")]


class AgentReportOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    domains_accepted: Annotated[
        int,
        Field(
            description="domains of this host whose sizes were recorded", title="Domains Accepted"
        ),
    ]
    drift: Annotated[list[DriftPnode], Field(title="Drift")]
    drift_flagged: Annotated[bool, Field(title="Drift Flagged")]
    host_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Host Id"
        ),
    ]
    unknown_domains: Annotated[
        list[str],
        Field(
            description="reported ids numa-balloon does not manage, or domains migrating to or from this host but placed on the other; ignored (a domain of another host is refused: 409 with `foreign_domain_ids`)",
            title="Unknown Domains",
        ),
    ]


class BalloonReport(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    vnodes: Annotated[list[PoolReport], Field(max_length=32, min_length=1, title="Vnodes")]


class ClusterPatch(BaseModel):
    """
    `{"ha": {...}}` turns failover protection on (or changes it), `{"ha": null}` off; a
    field left out is left alone.
    """

    model_config = ConfigDict(
        extra="allow",
    )
    block_mib: Annotated[
        BlockMib | None, Field(description="As PUT /v1/cluster", title="Block Mib")
    ] = None
    ha: HaSettings | None = None


class Vnodes(RootModel[list[VnodeIn]]):
    root: Annotated[
        list[VnodeIn],
        Field(description="Explicit vnodes (one of three forms)", max_length=32, title="Vnodes"),
    ]


class DomainCreate(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    block_mib: Annotated[
        BlockMib1 | None,
        Field(
            description="The guest's memory hotplug block (power of two); default the cluster's",
            title="Block Mib",
        ),
    ] = None
    external_id: Annotated[ExternalId | None, Field(title="External Id")] = None
    host_id: Annotated[
        HostId | None, Field(description="Place here, or fail; else the best host", title="Host Id")
    ] = None
    labels: Annotated[
        dict[
            Annotated[
                str,
                StringConstraints(
                    pattern=r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,126}[A-Za-z0-9])?$",
                    min_length=1,
                    max_length=128,
                ),
            ],
            str,
        ]
        | None,
        Field(
            description="The orchestrator's own labels, string to string, at most 64 pairs; filter lists with ?label=key=value",
            examples=[{"pool": "gold", "rack": "r12"}],
            title="Labels",
        ),
    ] = None
    memory: MemoryIn
    name: Annotated[
        str,
        Field(
            description="1-255 characters, stored in Unicode NFC form; no '/', control, format (e.g. RTL override, zero-width), surrogate, private-use or unassigned characters; not blank",
            max_length=255,
            min_length=1,
            title="Name",
        ),
    ]
    policy: Annotated[
        Literal["proportional", "round-robin", "nearest", "faithful", "explicit"] | None,
        Field(
            description="How a domain's target is spread over its vnodes: proportional to their sizes (default),\nround-robin in block steps, nearest pools first, faithful (virtual distance follows physical\ndistance), or explicit per-vnode targets.",
            title="Policy",
        ),
    ] = "proportional"
    template: Annotated[
        Literal["worst-case"] | None,
        Field(
            description="The cluster's worst-case virtual topology, with `vcpus` (one of three forms)",
            title="Template",
        ),
    ] = None
    vcpus: Annotated[
        Vcpus | None,
        Field(
            description="With template or vnode_count: vCPU count, spread evenly over the vnodes",
            title="Vcpus",
        ),
    ] = None
    vnode_count: Annotated[
        VnodeCount | None,
        Field(
            description="Shorthand (one of three forms): this many vnodes of equal size and vCPU count, with `vcpus`; virtual distances from the host given in host_id (vnode v on pnode v*n/k, when k <= n pnodes), else 10 local / 20 remote",
            title="Vnode Count",
        ),
    ] = None
    vnode_size_mib: Annotated[
        VnodeSizeMib | None,
        Field(
            description="With template or vnode_count: every vnode's span (default dynamic_max / k, block-aligned)",
            title="Vnode Size Mib",
        ),
    ] = None
    vnode_targets_mib: Annotated[
        VnodeTargetsMib | None,
        Field(description="Per-vnode targets (policy explicit)", title="Vnode Targets Mib"),
    ] = None
    vnodes: Annotated[
        Vnodes | None, Field(description="Explicit vnodes (one of three forms)", title="Vnodes")
    ] = None


class DomainCreated(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    block_mib: Annotated[int, Field(title="Block Mib")]
    created_at: Annotated[AwareDatetime, Field(title="Created At")]
    external_id: Annotated[str | None, Field(title="External Id")]
    guest_token: Annotated[
        str | None,
        Field(
            description="The guest's bearer token for /v1/guest. Shown once, and again on an Idempotency-Key replay within the key's window (rotate it with POST /v1/domains/{id}/guest-token); null only on the replay of a record stored before secrets were kept.",
            title="Guest Token",
        ),
    ]
    host_agent: Annotated[
        Literal["connected", "lost"] | None,
        Field(
            description="Its host's agent: connected (lease held), lost (the lease lapsed: what the service holds of this domain is no longer observed), null when the host's agent never took a lease or the domain has no host",
            title="Host Agent",
        ),
    ] = None
    host_id: Annotated[str | None, Field(title="Host Id")]
    id: Annotated[
        str,
        Field(description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Id"),
    ]
    labels: Annotated[dict[str, str], Field(title="Labels")]
    memory: MemoryOut
    name: Annotated[str, Field(title="Name")]
    policy: Annotated[
        Literal["proportional", "round-robin", "nearest", "faithful", "explicit"],
        Field(
            description="How a domain's target is spread over its vnodes: proportional to their sizes (default),\nround-robin in block steps, nearest pools first, faithful (virtual distance follows physical\ndistance), or explicit per-vnode targets.",
            title="Policy",
        ),
    ]
    state: Annotated[str, Field(title="State")]
    step_failure: Annotated[
        StepFailure | None,
        Field(
            description="The last failed attempt of one of its pool steps, while it stands: retried after retry_at (null once max_attempts are spent); cleared when a pool step is done or the target changes"
        ),
    ] = None
    uncooperative: Annotated[bool, Field(title="Uncooperative")]
    version: Annotated[int, Field(title="Version")]
    vnodes: Annotated[list[VnodeOut], Field(title="Vnodes")]


class DomainOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    block_mib: Annotated[int, Field(title="Block Mib")]
    created_at: Annotated[AwareDatetime, Field(title="Created At")]
    external_id: Annotated[str | None, Field(title="External Id")]
    host_agent: Annotated[
        Literal["connected", "lost"] | None,
        Field(
            description="Its host's agent: connected (lease held), lost (the lease lapsed: what the service holds of this domain is no longer observed), null when the host's agent never took a lease or the domain has no host",
            title="Host Agent",
        ),
    ] = None
    host_id: Annotated[str | None, Field(title="Host Id")]
    id: Annotated[
        str,
        Field(description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Id"),
    ]
    labels: Annotated[dict[str, str], Field(title="Labels")]
    memory: MemoryOut
    name: Annotated[str, Field(title="Name")]
    policy: Annotated[
        Literal["proportional", "round-robin", "nearest", "faithful", "explicit"],
        Field(
            description="How a domain's target is spread over its vnodes: proportional to their sizes (default),\nround-robin in block steps, nearest pools first, faithful (virtual distance follows physical\ndistance), or explicit per-vnode targets.",
            title="Policy",
        ),
    ]
    state: Annotated[str, Field(title="State")]
    step_failure: Annotated[
        StepFailure | None,
        Field(
            description="The last failed attempt of one of its pool steps, while it stands: retried after retry_at (null once max_attempts are spent); cleared when a pool step is done or the target changes"
        ),
    ] = None
    uncooperative: Annotated[bool, Field(title="Uncooperative")]
    version: Annotated[int, Field(title="Version")]
    vnodes: Annotated[list[VnodeOut], Field(title="Vnodes")]


class GuestBalloon(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    pending: Annotated[list[GuestOperation], Field(title="Pending")]
    target_mib: Annotated[int, Field(title="Target Mib")]
    vnodes: Annotated[list[GuestPool], Field(title="Vnodes")]


class GuestTopology(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    block_mib: Annotated[int, Field(title="Block Mib")]
    vnodes: Annotated[list[GuestVnode], Field(title="Vnodes")]


class HaOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    allow_spread: Annotated[bool, Field(title="Allow Spread")]
    exact: Annotated[bool, Field(title="Exact")]
    holds: Annotated[bool, Field(description="The plan is tolerated now", title="Holds")]
    host_failures: Annotated[int, Field(title="Host Failures")]
    label_selector: Annotated[str | None, Field(title="Label Selector")]
    overcommitted: Annotated[
        bool,
        Field(
            description="A change was let through (?ha_overcommit=true) or protection was turned on while the plan did not hold; changes are not refused until it holds again",
            title="Overcommitted",
        ),
    ]
    protected_domains: Annotated[int, Field(title="Protected Domains")]
    stranded: Annotated[list[UnplacedOut], Field(title="Stranded")]
    worst_failed_host_ids: Annotated[list[str], Field(title="Worst Failed Host Ids")]


class HostCreate(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    distances: Annotated[
        list[Distance],
        Field(
            description="ACPI SLIT: n x n integers, diagonal 10, off-diagonal 11..254",
            max_length=64,
            title="Distances",
        ),
    ]
    external_id: Annotated[ExternalId | None, Field(title="External Id")] = None
    labels: Annotated[
        dict[
            Annotated[
                str,
                StringConstraints(
                    pattern=r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,126}[A-Za-z0-9])?$",
                    min_length=1,
                    max_length=128,
                ),
            ],
            str,
        ]
        | None,
        Field(
            description="The orchestrator's own labels, string to string, at most 64 pairs; filter lists with ?label=key=value",
            examples=[{"pool": "gold", "rack": "r12"}],
            title="Labels",
        ),
    ] = None
    name: Annotated[
        str,
        Field(
            description="1-255 characters, stored in Unicode NFC form; no '/', control, format (e.g. RTL override, zero-width), surrogate, private-use or unassigned characters; not blank",
            max_length=255,
            min_length=1,
            title="Name",
        ),
    ]
    pnodes: Annotated[list[PnodeIn], Field(max_length=64, min_length=1, title="Pnodes")]


class MigrationRequest(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    auto_advance: Annotated[
        bool | None,
        Field(
            description="The service advances each phase as soon as its steps are acknowledged (starting at once with planned -> preparing); the caller only watches the events",
            title="Auto Advance",
        ),
    ] = False
    destination_host_id: Annotated[
        str,
        Field(
            description="UUID",
            examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"],
            pattern="^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
            title="Destination Host Id",
        ),
    ]
    domain_id: Annotated[
        str,
        Field(
            description="UUID",
            examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"],
            pattern="^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
            title="Domain Id",
        ),
    ]
    policy: Annotated[
        Literal["proportional", "round-robin", "nearest", "faithful", "explicit"] | None,
        Field(
            description="Pool levels on the destination; default the domain's policy (faithful when it is explicit)"
        ),
    ] = None
    strategy: Annotated[
        Literal["rebalance", "replug"] | None,
        Field(
            description="rebalance: fewest MiB moved between pools; replug: unplug every hot-pluggable block down to a boot minimum, migrate, replug by the new topology",
            title="Strategy",
        ),
    ] = "rebalance"


class ObservedIn(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    pnodes: Annotated[list[ObservedPnode], Field(max_length=64, min_length=1, title="Pnodes")]


class PageDomainOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    items: Annotated[list[DomainOut], Field(title="Items")]
    next_cursor: Annotated[
        str | None,
        Field(
            description="Pass as ?cursor= to get the next page; null on the last page",
            title="Next Cursor",
        ),
    ] = None


class PlacementRequest(BaseModel):
    """
    A domain's create body with name and host optional: where would it go?
    """

    model_config = ConfigDict(
        extra="allow",
    )
    block_mib: Annotated[
        BlockMib1 | None,
        Field(
            description="The guest's memory hotplug block (power of two); default the cluster's",
            title="Block Mib",
        ),
    ] = None
    external_id: Annotated[ExternalId | None, Field(title="External Id")] = None
    host_id: Annotated[
        HostId | None, Field(description="Place here, or fail; else the best host", title="Host Id")
    ] = None
    labels: Annotated[
        dict[
            Annotated[
                str,
                StringConstraints(
                    pattern=r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,126}[A-Za-z0-9])?$",
                    min_length=1,
                    max_length=128,
                ),
            ],
            str,
        ]
        | None,
        Field(
            description="The orchestrator's own labels, string to string, at most 64 pairs; filter lists with ?label=key=value",
            examples=[{"pool": "gold", "rack": "r12"}],
            title="Labels",
        ),
    ] = None
    memory: MemoryIn
    name: Annotated[Name | None, Field(title="Name")] = None
    policy: Annotated[
        Literal["proportional", "round-robin", "nearest", "faithful", "explicit"] | None,
        Field(
            description="How a domain's target is spread over its vnodes: proportional to their sizes (default),\nround-robin in block steps, nearest pools first, faithful (virtual distance follows physical\ndistance), or explicit per-vnode targets.",
            title="Policy",
        ),
    ] = "proportional"
    template: Annotated[
        Literal["worst-case"] | None,
        Field(
            description="The cluster's worst-case virtual topology, with `vcpus` (one of three forms)",
            title="Template",
        ),
    ] = None
    vcpus: Annotated[
        Vcpus | None,
        Field(
            description="With template or vnode_count: vCPU count, spread evenly over the vnodes",
            title="Vcpus",
        ),
    ] = None
    vnode_count: Annotated[
        VnodeCount | None,
        Field(
            description="Shorthand (one of three forms): this many vnodes of equal size and vCPU count, with `vcpus`; virtual distances from the host given in host_id (vnode v on pnode v*n/k, when k <= n pnodes), else 10 local / 20 remote",
            title="Vnode Count",
        ),
    ] = None
    vnode_size_mib: Annotated[
        VnodeSizeMib | None,
        Field(
            description="With template or vnode_count: every vnode's span (default dynamic_max / k, block-aligned)",
            title="Vnode Size Mib",
        ),
    ] = None
    vnode_targets_mib: Annotated[
        VnodeTargetsMib1 | None,
        Field(description="Per-vnode targets (policy explicit)", title="Vnode Targets Mib"),
    ] = None
    vnodes: Annotated[
        Vnodes | None, Field(description="Explicit vnodes (one of three forms)", title="Vnodes")
    ] = None


class PlanOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    backing_after: Annotated[list[list[int]], Field(title="Backing After")]
    backing_before: Annotated[list[list[int]], Field(title="Backing Before")]
    claims_mib: Annotated[
        list[int], Field(description="Destination MiB claimed per pnode", title="Claims Mib")
    ]
    destination_host_id: Annotated[
        str,
        Field(
            description="UUID",
            examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"],
            title="Destination Host Id",
        ),
    ]
    distortion_after: Annotated[float, Field(title="Distortion After")]
    distortion_before: Annotated[float, Field(title="Distortion Before")]
    domain_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Domain Id"
        ),
    ]
    feasible: Annotated[bool, Field(title="Feasible")]
    mapping_after: Annotated[list[int], Field(title="Mapping After")]
    mapping_before: Annotated[list[int], Field(title="Mapping Before")]
    moved_mib: Annotated[int, Field(title="Moved Mib")]
    reason: Annotated[str, Field(title="Reason")]
    remote_fraction_after: Annotated[float, Field(title="Remote Fraction After")]
    remote_fraction_before: Annotated[float, Field(title="Remote Fraction Before")]
    source_host_id: Annotated[
        str,
        Field(
            description="UUID",
            examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"],
            title="Source Host Id",
        ),
    ]
    steps: Annotated[list[PlanStepOut], Field(title="Steps")]
    strategy: Annotated[Literal["rebalance", "replug"], Field(title="Strategy")]
    target_after_mib: Annotated[int, Field(title="Target After Mib")]
    target_before_mib: Annotated[int, Field(title="Target Before Mib")]


class Problem(BaseModel):
    """
    RFC 9457 problem details.
    """

    model_config = ConfigDict(
        extra="allow",
    )
    detail: Annotated[str, Field(title="Detail")]
    errors: Annotated[
        list[ValidationIssue] | None,
        Field(
            description="Where the input is wrong: at most the first 50 located errors (see errors_omitted)",
            title="Errors",
        ),
    ] = None
    errors_omitted: Annotated[
        int | None,
        Field(
            description="How many more located errors there were beyond those listed in errors (at least 1); absent when errors lists them all",
            title="Errors Omitted",
        ),
    ] = None
    instance: Annotated[str | None, Field(title="Instance")] = None
    max_feasible_mib: Annotated[int | None, Field(title="Max Feasible Mib")] = None
    status: Annotated[int, Field(title="Status")]
    title: Annotated[str, Field(title="Title")]
    type: Annotated[str, Field(title="Type")]


class RecoveryOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    done: Annotated[
        bool,
        Field(description="No restart is still waiting for its destination's agent", title="Done"),
    ]
    failed_at: Annotated[str, Field(title="Failed At")]
    reason: Annotated[str, Field(title="Reason")]
    restarts: Annotated[list[RecoveryRestart], Field(title="Restarts")]
    stranded: Annotated[list[UnplacedOut], Field(title="Stranded")]


class ReportDomain(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    domain_id: Annotated[
        str,
        Field(
            description="UUID",
            examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"],
            pattern="^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
            title="Domain Id",
        ),
    ]
    vnodes: Annotated[list[ReportVnode], Field(max_length=32, title="Vnodes")]


class RestartOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    distortion: Annotated[float, Field(title="Distortion")]
    domain_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Domain Id"
        ),
    ]
    failed_host_id: Annotated[
        str,
        Field(
            description="UUID",
            examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"],
            title="Failed Host Id",
        ),
    ]
    host_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Host Id"
        ),
    ]
    vnodes: Annotated[list[VnodeHome], Field(title="Vnodes")]


class SqueezeResult(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    domains: Annotated[list[SqueezedDomain], Field(title="Domains")]
    dry_run: Annotated[bool, Field(title="Dry Run")]
    free_mib_after: Annotated[list[int], Field(title="Free Mib After")]
    gamma: Annotated[
        float,
        Field(description="The one fraction of every domain's dynamic range kept", title="Gamma"),
    ]
    host_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Host Id"
        ),
    ]
    order: Annotated[
        list[str],
        Field(description="Apply in this order: all decreases, then increases", title="Order"),
    ]


class StepList(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    items: Annotated[list[StepOut], Field(title="Items")]


class AgentReportIn(BaseModel):
    """
    One request per host per interval: free memory per pnode and every domain's per-vnode
    actual size as the hypervisor sees it (guests without an in-guest driver are observed too).
    """

    model_config = ConfigDict(
        extra="allow",
    )
    domains: Annotated[list[ReportDomain] | None, Field(max_length=4096, title="Domains")] = None
    pnodes: Annotated[list[ObservedPnode] | None, Field(max_length=64, title="Pnodes")] = None


class ClusterOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    allocated_mib: Annotated[int, Field(title="Allocated Mib")]
    block_mib: Annotated[int, Field(title="Block Mib")]
    capacity_mib: Annotated[int, Field(title="Capacity Mib")]
    claimed_mib: Annotated[int, Field(title="Claimed Mib")]
    domains: Annotated[int, Field(description="Number of domains", title="Domains")]
    free_mib: Annotated[int, Field(title="Free Mib")]
    ha: Annotated[
        HaOut | None,
        Field(description="Failover protection (issue 26) and whether it holds now; null when off"),
    ] = None
    hosts: Annotated[int, Field(description="Number of registered hosts", title="Hosts")]
    hosts_by_state: Annotated[dict[str, int], Field(title="Hosts By State")]
    version: Annotated[int, Field(title="Version")]
    worst_case_template: Annotated[dict[str, Any] | None, Field(title="Worst Case Template")]


class FailoverPlanOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    duration_ms: Annotated[float, Field(title="Duration Ms")]
    exact: Annotated[
        bool,
        Field(description="Every scenario was enumerated and each answer proven", title="Exact"),
    ]
    host_failures: Annotated[int, Field(title="Host Failures")]
    max_host_failures: Annotated[
        int, Field(description="The largest r proven tolerated", title="Max Host Failures")
    ]
    max_host_failures_exact: Annotated[
        bool, Field(description="r + 1 is proven not tolerated", title="Max Host Failures Exact")
    ]
    method: Annotated[
        str,
        Field(
            description="exhaustive; or the bound that decided: slots, reservations, totals, bound",
            title="Method",
        ),
    ]
    note: Annotated[str, Field(title="Note")]
    protected_domains: Annotated[int, Field(title="Protected Domains")]
    restarts: Annotated[list[RestartOut], Field(title="Restarts")]
    scenarios: Annotated[int, Field(title="Scenarios")]
    searched: Annotated[int, Field(title="Searched")]
    tolerated: Annotated[
        bool,
        Field(
            description="Every scenario of host_failures failures restarts every protected domain (never claimed without proof)",
            title="Tolerated",
        ),
    ]
    worst: WorstOut | None


class HostCreated(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    agent: Annotated[HostAgent, Field(description="The host agent's lease and its last report")]
    agent_token: Annotated[
        str | None,
        Field(
            description="The host agent's bearer token. Shown once, and again on an Idempotency-Key replay within the key's window (rotate it with POST /v1/hosts/{id}/agent-token); null only on the replay of a record stored before secrets were kept.",
            title="Agent Token",
        ),
    ]
    created_at: Annotated[AwareDatetime, Field(title="Created At")]
    distances: Annotated[list[list[int]], Field(title="Distances")]
    drift_flagged: Annotated[bool, Field(title="Drift Flagged")]
    evacuation: Annotated[
        Evacuation | None,
        Field(
            description="Set after POST /v1/hosts/{id}/evacuate until the host is made active again"
        ),
    ]
    external_id: Annotated[str | None, Field(title="External Id")]
    id: Annotated[
        str,
        Field(description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Id"),
    ]
    labels: Annotated[dict[str, str], Field(title="Labels")]
    memory: Annotated[MemoryTotals, Field(description="The pnodes' figures summed")]
    name: Annotated[str, Field(title="Name")]
    pnodes: Annotated[list[PnodeOut], Field(title="Pnodes")]
    recovery: Annotated[
        RecoveryOut | None,
        Field(
            description="Set once the host was declared failed (POST /v1/hosts/{id}/fail): where its protected domains restart, and how far they are"
        ),
    ] = None
    state: Annotated[
        Literal["active", "maintenance", "offline"],
        Field(
            description="active: takes new domains; maintenance: keeps its domains, takes none (evacuate moves\nthem); offline: takes none.",
            title="HostLifecycle",
        ),
    ]
    version: Annotated[int, Field(title="Version")]


class HostOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    agent: Annotated[HostAgent, Field(description="The host agent's lease and its last report")]
    created_at: Annotated[AwareDatetime, Field(title="Created At")]
    distances: Annotated[list[list[int]], Field(title="Distances")]
    drift_flagged: Annotated[bool, Field(title="Drift Flagged")]
    evacuation: Annotated[
        Evacuation | None,
        Field(
            description="Set after POST /v1/hosts/{id}/evacuate until the host is made active again"
        ),
    ]
    external_id: Annotated[str | None, Field(title="External Id")]
    id: Annotated[
        str,
        Field(description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Id"),
    ]
    labels: Annotated[dict[str, str], Field(title="Labels")]
    memory: Annotated[MemoryTotals, Field(description="The pnodes' figures summed")]
    name: Annotated[str, Field(title="Name")]
    pnodes: Annotated[list[PnodeOut], Field(title="Pnodes")]
    recovery: Annotated[
        RecoveryOut | None,
        Field(
            description="Set once the host was declared failed (POST /v1/hosts/{id}/fail): where its protected domains restart, and how far they are"
        ),
    ] = None
    state: Annotated[
        Literal["active", "maintenance", "offline"],
        Field(
            description="active: takes new domains; maintenance: keeps its domains, takes none (evacuate moves\nthem); offline: takes none.",
            title="HostLifecycle",
        ),
    ]
    version: Annotated[int, Field(title="Version")]


class MigrationOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    auto_advance: Annotated[bool, Field(title="Auto Advance")]
    claims: Annotated[list[ClaimOut], Field(title="Claims")]
    created_at: Annotated[AwareDatetime, Field(title="Created At")]
    destination_host_id: Annotated[str | None, Field(title="Destination Host Id")]
    domain_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Domain Id"
        ),
    ]
    expires_at: Annotated[
        AwareDatetime | None,
        Field(
            description="The claims' lease while planned; null once past planned (claims held)",
            title="Expires At",
        ),
    ]
    id: Annotated[
        str,
        Field(description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Id"),
    ]
    plan: PlanOut | None
    progress_at: Annotated[AwareDatetime, Field(title="Progress At")]
    reason: Annotated[str | None, Field(title="Reason")]
    source_host_id: Annotated[str | None, Field(title="Source Host Id")]
    state: Annotated[
        Literal["planned", "preparing", "migrating", "settling", "completed", "aborted", "failed"],
        Field(title="MigrationState"),
    ]
    steps: Annotated[list[MigrationStepOut], Field(title="Steps")]
    strategy: Annotated[Literal["rebalance", "replug"], Field(title="Strategy")]
    stuck: Annotated[
        bool,
        Field(
            description="Past planned and no progress (advance, acknowledged step) for NUMA_BALLOON_STUCK_AFTER_S; the claims stay held",
            title="Stuck",
        ),
    ]
    stuck_reason: Annotated[str | None, Field(title="Stuck Reason")]
    updated_at: Annotated[AwareDatetime, Field(title="Updated At")]
    version: Annotated[int, Field(title="Version")]


class PageHostOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    items: Annotated[list[HostOut], Field(title="Items")]
    next_cursor: Annotated[
        str | None,
        Field(
            description="Pass as ?cursor= to get the next page; null on the last page",
            title="Next Cursor",
        ),
    ] = None


class PageMigrationOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    items: Annotated[list[MigrationOut], Field(title="Items")]
    next_cursor: Annotated[
        str | None,
        Field(
            description="Pass as ?cursor= to get the next page; null on the last page",
            title="Next Cursor",
        ),
    ] = None


class EvacuationOut(BaseModel):
    model_config = ConfigDict(
        extra="allow",
    )
    host_id: Annotated[
        str,
        Field(
            description="UUID", examples=["6f1c2b1e-8d2a-4f7e-9a51-2f3c4d5e6f70"], title="Host Id"
        ),
    ]
    migrations: Annotated[
        list[MigrationOut], Field(description="One per domain leaving the host", title="Migrations")
    ]
    unplaced: Annotated[
        list[Unplaced],
        Field(description="Domains that stay, each with its reason", title="Unplaced"),
    ]
