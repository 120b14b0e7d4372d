"""GET /v1/domains/{id}/export?format=libvirt-domain: a domain libvirt defines as it is."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.api.client import ApiClient
from tests.api.factories import domain_body, host_body
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
