"""libvirt (KVM with virtio-mem) through the libvirt Python binding.

- topology: the capabilities XML (cells, memory, cpus, sibling distances; 10/20 without them);
- free memory per cell: `getCellsFreeMemory` (bytes);
- domains: the running domains' live XML; a vnode's actual size is its cell's boot memory plus
  its virtio-mem device's `<current>`; a one-cell domain without devices reports the balloon;
- pool steps: the vnode's virtio-mem `<requested>` (virDomainUpdateDeviceFlags, what
  `virsh update-memory-device` does); a domain without virtio-mem gets its total through the
  balloon (`setMemoryFlags`);
- migrate: live (`migrateToURI3` with the destination XML carrying the new `<numatune>`) or
  cold (stop here, define and start the destination XML there), to `--migrate-uri` with
  `{host}` replaced by the destination host's name;
- release: checks the domain no longer runs here.
The service's domain id is the libvirt UUID (the `libvirt-domain` export sets it).

Without the binding, or without a daemon to connect to, the backend cannot start
(`Unavailable`, exit 3, one line); a daemon that stops answering later ends the agent the same
way, and the service manager starts it again on a fresh connection.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from numa_balloon_agent.backends import libvirt_xml as lx
from numa_balloon_agent.backends.base import DomainReport, default_distances
from numa_balloon_agent.steps import KIB_PER_MIB, Outcome, Step, not_ours
from numa_balloon_client import machine
from numa_balloon_client.programs.exits import Unavailable

MIB = 1024 * 1024


def _binding() -> Any:
    try:
        return importlib.import_module("libvirt")
    except ImportError as exc:
        raise Unavailable(
            "the libvirt backend needs the libvirt Python binding (libvirt-python): "
            "`make libvirt-binding` in a numa-balloon checkout, or "
            "`pip install 'numa-balloon-agent[libvirt]'` (it builds against libvirt-dev, "
            "with pkg-config and gcc)"
        ) from exc


class LibvirtBackend:
    name = "libvirt"

    def __init__(
        self,
        uri: str = "qemu:///system",
        *,
        migrate_uri: str = "qemu+ssh://{host}/system",
        migration: str = "live",
    ) -> None:
        self.lv = _binding()
        # Errors come back as libvirtError exceptions; libvirt's default handler would also
        # print each one (a domain looked up and not found is an answer here, not an error).
        self.lv.registerErrorHandler(lambda _ctx, _err: None, None)
        self.uri = uri
        with self._answering("cannot connect to", " (is its daemon running, its socket ours?)"):
            self.conn = self.lv.open(uri)
        self.migrate_uri = migrate_uri
        self.migration = migration

    @contextmanager
    def _answering(self, doing: str, hint: str = "") -> Iterator[None]:
        """libvirt errors while observing: the hypervisor is not answering (one line)."""
        try:
            yield
        except self.lv.libvirtError as exc:
            raise Unavailable(f"libvirt: {doing} {self.uri}{hint}: {exc}") from exc

    def external_id(self) -> str | None:
        """A local hypervisor is this machine (/etc/machine-id, as the CLI's --from-sysfs and
        the sysfs backend read it); a remote one is named by its capabilities' host UUID.
        The test driver is no machine at all."""
        where = urlsplit(self.uri)
        if where.scheme.split("+")[0] == "test":
            return None
        if not where.netloc:
            return machine.external_id()
        with self._answering("cannot read the capabilities of"):
            uuid = lx.host_uuid(self.conn.getCapabilities())
        return None if uuid is None else f"libvirt:{uuid}"

    # --- discovery and observation -----------------------------------------------------------

    def _cells(self) -> tuple[list[int], list[int], list[list[int]]]:
        with self._answering("cannot read the capabilities of"):
            memory, cpus, slit = lx.host_topology(self.conn.getCapabilities())
            if not memory:  # no NUMA information: the whole machine is one node
                info = self.conn.getInfo()
                return [int(info[1])], [int(info[2])], default_distances(1)
        return memory, cpus, slit

    def discover(self, *, name: str, reserved_mib: int) -> dict[str, Any]:
        memory, cpus, slit = self._cells()
        pnodes = [
            {"memory_mib": m, "reserved_mib": reserved_mib, "cpus": c}
            for m, c in zip(memory, cpus, strict=True)
        ]
        return {"name": name, "pnodes": pnodes, "distances": slit}

    def free_mib(self) -> list[int]:
        n = len(self._cells()[0])
        with self._answering("cannot read the free memory of"):
            return [int(b) // MIB for b in self.conn.getCellsFreeMemory(0, n)]

    def domains(self) -> list[DomainReport]:
        out = []
        with self._answering("cannot list the domains of"):
            running = self.conn.listAllDomains(self.lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        for dom in running:
            try:
                vnodes = self._actual(dom)
            except self.lv.libvirtError:
                continue  # it stopped between the listing and the look: not running here
            if vnodes:
                out.append({"domain_id": dom.UUIDString(), "vnodes": vnodes})
        return out

    def _actual(self, dom: Any) -> list[dict[str, int]]:
        lay = lx.layout(dom.XMLDesc(0))
        if lay.devices:
            return [
                {"index": cell, "actual_mib": (boot + dev.current_kib) // KIB_PER_MIB}
                for cell, boot in sorted(lay.boot_kib.items())
                if (dev := lay.devices.get(cell)) is not None and dev.current_kib is not None
            ]
        if len(lay.boot_kib) <= 1:  # one pool: the balloon's size is the pool's
            return [{"index": 0, "actual_mib": int(dom.info()[2]) // KIB_PER_MIB}]
        return []  # several pools behind one balloon: only the guest can tell them apart

    # --- actions -----------------------------------------------------------------------------

    def _lookup(self, domain_id: str) -> Any | None:
        try:
            return self.conn.lookupByUUIDString(domain_id)
        except self.lv.libvirtError:
            return None

    def apply(self, step: Step, *, dry_run: bool) -> Outcome:
        try:
            if step.is_pool_op:
                return self._pool(step, dry_run)
            if step.op == "migrate":
                return self._migrate(step, dry_run)
            if step.op == "release":
                return self._release(step)
            if step.op == "start":
                return self._start(step, dry_run)
        except self.lv.libvirtError as exc:
            return Outcome(True, False, f"libvirt: {exc}")
        return Outcome(True, False, f"libvirt backend: unsupported op {step.op}")

    def _pool(self, step: Step, dry_run: bool) -> Outcome:
        dom = self._lookup(step.domain_id)
        if dom is None:
            return not_ours(f"domain {step.domain_id} is not defined on {self.uri}")
        assert step.vnode is not None and step.target_mib is not None
        lay = lx.layout(dom.XMLDesc(0))
        device = lay.devices.get(step.vnode)
        live = self.lv.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0
        if device is not None:
            requested = lx.requested_kib(device, lay.boot_kib.get(step.vnode, 0), step.target_mib)
            affect = self._affect(dom)
            if step.op == "balloon" and requested == device.requested_kib:
                return _whole_blocks(step, device, "already")
            if dry_run:
                what = f"virtio-mem node {step.vnode}, requested={requested} KiB"
                return Outcome(False, True, "; ".join(_update(what, a) for a in affect))
            outcome = self._resize_device(dom, device, requested, affect)
            if step.op == "balloon":
                return _whole_blocks(
                    step, dataclasses.replace(device, requested_kib=requested), outcome.detail
                )
            return outcome
        total = self._balloon_total(step, lay, dom)
        call = f"setMemoryFlags({total} KiB)"
        if not dry_run:
            dom.setMemoryFlags(total, live or self.lv.VIR_DOMAIN_AFFECT_CONFIG)
        return Outcome(False, True, call)

    def _affect(self, dom: Any) -> list[str]:
        """The definitions a device update changes, one call each: libvirt (9.0) refuses
        AFFECT_LIVE|AFFECT_CONFIG for a memory device ("memory not found", the device parsed for
        the saved definition has lost its live alias), while each alone works."""
        if not dom.isActive():
            return ["CONFIG"]
        return ["LIVE", "CONFIG"] if dom.isPersistent() else ["LIVE"]

    def _resize_device(
        self, dom: Any, device: lx.VirtioMem, requested: int, affect: list[str]
    ) -> Outcome:
        """`<requested>` of the running device (its live element: the alias names the QEMU
        device), then of the saved definition's (its own element, matched by address). Once the
        live size is set the step stands; a saved definition that did not follow is said in the
        detail."""
        lv = self.lv
        what = f"virtio-mem node {device.node}, requested={requested} KiB"
        done: list[str] = []
        for a in affect:
            element = device
            if a == "CONFIG" and dom.isActive():
                saved = lx.layout(dom.XMLDesc(lv.VIR_DOMAIN_XML_INACTIVE)).devices.get(device.node)
                if saved is None:
                    done.append(f"the saved definition has no virtio-mem device on {device.node}")
                    break
                element = saved
            flag = lv.VIR_DOMAIN_AFFECT_LIVE if a == "LIVE" else lv.VIR_DOMAIN_AFFECT_CONFIG
            try:
                dom.updateDeviceFlags(lx.device_update_xml(element, requested), flag)
            except lv.libvirtError as exc:
                if not done:
                    raise  # nothing changed: the step failed
                done.append(f"the saved definition kept its size: {exc}")
                break
            done.append(_update(what, a))
        return Outcome(False, True, "; ".join(done))

    def _balloon_total(self, step: Step, lay: lx.DomainLayout, dom: Any) -> int:
        """One pool: its target. Several pools behind one balloon: the current balloon moved by
        this step's change (the guest's driver decides which pool gives or takes it)."""
        assert step.target_mib is not None
        if len(lay.boot_kib) <= 1:
            return step.target_mib * KIB_PER_MIB
        current = int(dom.info()[2])
        delta = step.mib * KIB_PER_MIB * (1 if step.grow else -1)
        return max(0, min(int(dom.maxMemory()), current + delta))

    def _migrate(self, step: Step, dry_run: bool) -> Outcome:
        dom = self._lookup(step.domain_id)
        if dom is None:
            return Outcome(True, False, f"domain {step.domain_id} is not on {self.uri}")
        dest = step.destination or {}
        if not dest.get("nodesets"):
            return Outcome(True, False, "the migrate step names no destination binding")
        uri = self.migrate_uri.format(host=dest["host_name"])
        flags = self.lv.VIR_DOMAIN_XML_MIGRATABLE | self.lv.VIR_DOMAIN_XML_SECURE
        xml = lx.destination_xml(dom.XMLDesc(flags), dest["nodesets"])
        if self.migration == "cold":
            return self._cold(dom, uri, xml, dry_run)
        mflags = (
            self.lv.VIR_MIGRATE_LIVE
            | self.lv.VIR_MIGRATE_PEER2PEER
            | self.lv.VIR_MIGRATE_PERSIST_DEST
            | self.lv.VIR_MIGRATE_UNDEFINE_SOURCE
        )
        call = f"migrateToURI3({uri}, DEST_XML with the new <numatune>, LIVE|PEER2PEER)"
        if not dry_run:
            dom.migrateToURI3(uri, {self.lv.VIR_MIGRATE_PARAM_DEST_XML: xml}, mflags)
        return Outcome(True, True, call + " = 0")

    def _cold(self, dom: Any, uri: str, xml: str, dry_run: bool) -> Outcome:
        call = f"destroy(); open({uri}).defineXML(new <numatune>).create(); undefine()"
        if dry_run:
            return Outcome(True, True, call)
        dconn = self.lv.open(uri)
        try:
            if dom.isActive():
                dom.destroy()
            dconn.defineXML(xml).create()
            if dom.isPersistent():
                dom.undefine()
        finally:
            dconn.close()
        return Outcome(True, True, call + " = 0")

    def _start(self, step: Step, dry_run: bool) -> Outcome:
        """A failover's restart (`POST /v1/hosts/{id}/fail`, or a lost agent with protection
        on): the domain's definition on this host is started. A host that has none cannot
        start it: the operator (or the orchestrator) defines it from the service's
        `export?format=libvirt-domain` first, and the failed step says so."""
        dom = self._lookup(step.domain_id)
        if dom is None:
            return Outcome(
                True,
                False,
                f"domain {step.domain_id} is not defined on {self.uri}: define it from "
                f"/v1/domains/{step.domain_id}/export?format=libvirt-domain, then start it",
            )
        if dom.isActive():
            return Outcome(True, True, f"domain {step.domain_id} already runs on {self.uri}")
        if not dry_run:
            dom.create()
        return Outcome(True, True, "create() = 0")

    def _release(self, step: Step) -> Outcome:
        dom = self._lookup(step.domain_id)
        if dom is not None and dom.isActive():
            return Outcome(True, False, f"domain {step.domain_id} still runs on {self.uri}")
        return Outcome(True, True, f"domain {step.domain_id} no longer runs on {self.uri}")

    def close(self) -> None:
        self.conn.close()


def _whole_blocks(step: Step, device: lx.VirtioMem, done: str) -> Outcome:
    """A `balloon` step on a virtio-mem device: the device plugs whole blocks and the guest has
    no per-node balloon, so the step is done once the device is asked for the whole blocks its
    target needs (rounded up: the service counts the top block whole). Acknowledged at once, so
    it never waits for a report of a size the device cannot take."""
    size = f"requested={device.requested_kib} KiB"
    why = f"whole blocks: virtio-mem node {device.node} {size} holds {step.target_mib} MiB"
    return Outcome(True, True, f"{done}; {why}" if done != "already" else f"{why} already")


def _update(what: str, affect: str) -> str:
    return f"updateDeviceFlags({what}, AFFECT_{affect})"
