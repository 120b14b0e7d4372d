"""GET /v1/domains/{id}/export?format=libvirt-domain: a domain libvirt defines as it is."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body
from tests.api.test_bad_input import assert_problem
from tests.libvirt_env import virsh


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_export_defines_in_the_test_driver(client: ApiClient, tmp_path: Path) -> None:
    host = client.post("/v1/hosts", json=host_body("kvm-1", n=2)).json()
    body = domain_body("vm-1", [2048, 2048, 4096], target_mib=5000, host_id=host["id"])
    dom = client.post("/v1/domains", json=body).json()
    r = client.get(f"/v1/domains/{dom['id']}/export", params={"format": "libvirt-domain"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/xml")
    path = tmp_path / "vm.xml"
    path.write_text(r.text)
    back = virsh(f"define {path}", "dumpxml vm-1")
    root = ET.fromstring(back[back.index("<domain") :])
    devices = root.findall("devices/memory[@model='virtio-mem']")
    assert [d.findtext("target/node") for d in devices] == ["0", "1", "2"]
    cells = root.findall("cpu/numa/cell")
    for vnode, cell, device in zip(dom["vnodes"], cells, devices, strict=True):
        size_kib = int(device.findtext("target/size") or "0")
        assert int(cell.get("memory") or "0") + size_kib == vnode["size_mib"] * 1024
    assert root.findtext("currentMemory") == str(5000 * 1024)


BOOT = {
    "format": "libvirt-domain",
    "domain_type": "qemu",
    "kernel": "/srv/nb/vmlinuz",
    "initrd": "/srv/nb/initrd.gz",
    "cmdline": "console=ttyS0 memhp_default_state=online_movable",
    "serial_log": "/srv/nb/console.log",
}


def _exported(client: ApiClient, name: str) -> str:
    host = client.post("/v1/hosts", json=host_body(f"{name}-host", n=2)).json()
    body = domain_body(name, [1024, 1024], target_mib=1536, host_id=host["id"])
    return str(client.post("/v1/domains", json=body).json()["id"])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_export_with_a_boot_defines_and_keeps_the_default_unchanged(
    client: ApiClient, tmp_path: Path
) -> None:
    """Issue 27 item 5: what a first boot needs, when asked; nothing when not."""
    dom = _exported(client, "vm-boot")
    plain = client.get(f"/v1/domains/{dom}/export", params={"format": "libvirt-domain"}).text
    root = ET.fromstring(plain)
    assert root.get("type") == "kvm" and root.find("os/kernel") is None
    assert root.find("devices/serial") is None
    r = client.get(f"/v1/domains/{dom}/export", params=BOOT)
    assert r.status_code == 200, r.text
    path = tmp_path / "boot.xml"
    path.write_text(r.text)
    back = virsh(f"define {path}", "dumpxml vm-boot")
    root = ET.fromstring(back[back.index("<domain") :])
    assert root.get("type") == "qemu"
    assert [root.findtext(f"os/{t}") for t in ("kernel", "initrd", "cmdline")] == [
        BOOT["kernel"],
        BOOT["initrd"],
        BOOT["cmdline"],
    ]
    assert root.find("devices/serial/source").get("path") == BOOT["serial_log"]  # type: ignore[union-attr]
    # Apart from what was asked for, the same domain.
    for tag in ("memory", "currentMemory", "maxMemory", "vcpu", "numatune", "cpu"):
        a, b = ET.fromstring(plain).find(tag), ET.fromstring(r.text).find(tag)
        assert a is not None and b is not None
        assert ET.tostring(a) == ET.tostring(b), tag


LD = {"format": "libvirt-domain"}
BAD = [
    ("not-for-xl", {"format": "xl", "kernel": "/boot/vmlinuz"}, ["query", "kernel"]),
    ("not-for-fragment", {"format": "libvirt", "domain_type": "qemu"}, ["query", "domain_type"]),
    ("initrd-alone", {**LD, "initrd": "/i.gz"}, ["query", "initrd"]),
    ("cmdline-alone", {**LD, "cmdline": "quiet"}, ["query", "cmdline"]),
    ("relative", {**LD, "kernel": "vmlinuz"}, ["query", "kernel"]),
    ("control", {**LD, "serial_log": "/a\x01b"}, ["query", "serial_log"]),
    ("newline", {**LD, "kernel": "/k", "cmdline": "a\nb"}, ["query", "cmdline"]),
    ("nonchar", {**LD, "kernel": "/k\ufffe"}, ["query", "kernel"]),
    ("long-path", {**LD, "kernel": "/" + "k" * 4096}, ["query", "kernel"]),
    ("long-cmdline", {**LD, "kernel": "/k", "cmdline": "q" * 2049}, ["query", "cmdline"]),
    ("xen", {**LD, "domain_type": "xen"}, ["query", "domain_type"]),
]  # fmt: skip


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("case", "params", "loc"), BAD, ids=[c[0] for c in BAD])
def test_export_options_are_refused_with_their_place(
    client: ApiClient, case: str, params: dict[str, str], loc: list[str]
) -> None:
    dom = _exported(client, f"vm-{case}")
    r = client.get(f"/v1/domains/{dom}/export", params=params)
    assert_problem(r, 422, loc)
    assert r.json()["type"] == "/problems/validation-error"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_export_options_need_the_admin_before_anything(client: ApiClient) -> None:
    dom = _exported(client, "vm-auth")
    r = client.get(f"/v1/domains/{dom}/export", params={"kernel": "x" * 5000}, token=None)
    assert r.status_code == 401
