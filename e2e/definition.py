"""What the operator adds to the service's `libvirt-domain` export so the guest agent can run:
the guest's only network, and the agent's URL and guest token (and a console log that a
migration's destination appends to rather than truncates: `<source append='on'>`).

- Network: QEMU's user-mode network with `restrict=on` (the guest reaches neither the host nor
  anything beyond) and one `guestfwd`: connections to 10.0.2.100:80 in the guest are relayed
  to the service on 127.0.0.1 (a `busybox nc` QEMU runs per connection). libvirt 9.0's
  `<interface type='user'>` has neither `restrict` nor `guestfwd` (its passt backend forwards
  host ports into the guest, the other direction), so this is a `<qemu:commandline>`
  passthrough of `-netdev user,...` and its virtio-net card (libvirt marks the domain tainted
  with custom-argv, and keeps the arguments through a migration).
- The URL and token: files given to QEMU's fw_cfg device (`<sysinfo type='fwcfg'>`), which the
  guest reads under /sys/firmware/qemu_fw_cfg/by_name/opt/org.numa-balloon/ (root only). Not
  the kernel command line: every process in the guest reads /proc/cmdline, and it is in the
  domain XML and QEMU's argv on the host. Not a file in the initramfs: the image is cached and
  shared by every run; a token is per domain. The file stays on the host (mode 0600), the
  domain XML names only its path (libvirt's `<oemStrings>` would put the value in the XML);
  QEMU reads it when it starts, also on a migration's destination.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
GUEST_SERVICE_ADDRESS = "10.0.2.100"
FW_CFG_DIR = "opt/org.numa-balloon"
RELAY = "/bin/busybox nc 127.0.0.1 {port}"
NIC_ADDRESS = "0x10"  # a PCI slot libvirt leaves free (it numbers its own devices from 0x2)


def guest_url() -> str:
    """The service's URL as the guest sees it."""
    return f"http://{GUEST_SERVICE_ADDRESS}"


def netdev(service_port: int) -> str:
    """The `-netdev` value: user-mode, restricted, one forward to the service."""
    relay = RELAY.format(port=service_port)
    return f"user,id=nb0,restrict=on,ipv6=off,guestfwd=tcp:{GUEST_SERVICE_ADDRESS}:80-cmd:{relay}"


def write_agent_config(directory: Path, token: str) -> dict[str, Path]:
    """The fw_cfg files (name under opt/org.numa-balloon -> host path), mode 0600."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {"url": directory / "url", "guest-token": directory / "guest-token"}
    for name, value in (("url", guest_url()), ("guest-token", token)):
        fd = os.open(files[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value)
    return files


def with_guest_agent(xml: str, *, service_port: int, config: dict[str, Path]) -> str:
    """The domain XML with the network and the agent's fw_cfg files added."""
    ET.register_namespace("qemu", QEMU_NS)
    root = ET.fromstring(xml)
    for source in root.findall("devices/serial[@type='file']/source"):
        source.set("append", "on")
    sysinfo = ET.SubElement(root, "sysinfo", {"type": "fwcfg"})
    for name, path in config.items():
        ET.SubElement(sysinfo, "entry", {"name": f"{FW_CFG_DIR}/{name}", "file": str(path)})
    commandline = ET.SubElement(root, f"{{{QEMU_NS}}}commandline")
    nic = f"virtio-net-pci,netdev=nb0,bus=pci.0,addr={NIC_ADDRESS}"
    for arg in ("-netdev", netdev(service_port), "-device", nic):
        ET.SubElement(commandline, f"{{{QEMU_NS}}}arg", {"value": arg})
    return ET.tostring(root, encoding="unicode")
