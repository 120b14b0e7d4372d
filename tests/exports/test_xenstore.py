"""xenstore export: KiB arithmetic, key names relative to /local/domain/<domid>/, no host data."""

from __future__ import annotations

import pytest

from service.exports import (
    ExportDomain,
    ExportVnode,
    export,
    to_xenstore,
    xenstore_keys,
)
from tests.exports.conftest import DomainFactory


def test_keys_and_kib_math(domain_factory: DomainFactory) -> None:
    domain = domain_factory(2, size_mib=2048, ballooned_mib=512)
    assert xenstore_keys(domain) == [
        ("memory/target", str(3072 * 1024)),
        ("memory/static-max", str(4096 * 1024)),
        ("memory/vnode0/target", str(1536 * 1024)),
        ("memory/vnode1/target", "1572864"),
    ]


def test_text_format(domain_factory: DomainFactory) -> None:
    text = to_xenstore(domain_factory(1, size_mib=1024, ballooned_mib=0))
    assert text == (
        "memory/target = 1048576\nmemory/static-max = 1048576\nmemory/vnode0/target = 1048576\n"
    )


def test_vnode_targets_sum_to_domain_target(domain_factory: DomainFactory) -> None:
    keys = dict(xenstore_keys(domain_factory(16)))
    vnode_kib = [int(keys[f"memory/vnode{v}/target"]) for v in range(16)]
    assert sum(vnode_kib) == int(keys["memory/target"])
    assert all(not k.startswith("/") for k in keys)  # relative to the domain's home


def test_large_and_zero_targets() -> None:
    """1 TiB in one vnode and a vnode ballooned to 0: plain integers, no overflow or float."""
    vnodes = (
        ExportVnode(0, 1 << 20, (0,), (10, 20), 1 << 20, 0, (1 << 20,)),
        ExportVnode(1, 128, (1,), (20, 10), 0, 0, (0,)),
    )
    domain = ExportDomain(
        "big", "00000000-0000-0000-0000-0000000000bb", (1 << 20) + 128, 1 << 20, vnodes
    )
    keys = dict(xenstore_keys(domain))
    assert keys["memory/vnode0/target"] == str(1 << 30)
    assert keys["memory/vnode1/target"] == "0"
    assert keys["memory/static-max"] == str(((1 << 20) + 128) * 1024)


def test_no_host_topology_leaks(domain_factory: DomainFactory) -> None:
    text = to_xenstore(domain_factory(4, pnodes=4, spread=(1,)))
    assert "pnode" not in text and "distance" not in text and "backing" not in text


def test_export_dispatch(domain_factory: DomainFactory) -> None:
    domain = domain_factory(2)
    assert export(domain, "xenstore") == to_xenstore(domain)
    assert export(domain, "xl").startswith('name = "guest-1"')
    assert export(domain, "libvirt").startswith("<cpu>")
    with pytest.raises(ValueError, match="unknown export format"):
        export(domain, "json")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"static_max_mib": 1}, "static_max_mib"),
        ({"target_mib": 1}, "sum of vnode targets"),
        ({"uuid": "not-a-uuid"}, "not a UUID"),
        ({"name": ""}, "non-empty"),
        ({"vnodes": ()}, "1 to 32 vnodes"),
    ],
)
def test_model_rejects_broken_invariants(
    change: dict[str, object], message: str, domain_factory: DomainFactory
) -> None:
    base = domain_factory(2)
    fields: dict[str, object] = {
        "name": base.name,
        "uuid": base.uuid,
        "static_max_mib": base.static_max_mib,
        "target_mib": base.target_mib,
        "vnodes": base.vnodes,
    }
    fields.update(change)
    with pytest.raises(ValueError, match=message):
        ExportDomain(**fields)  # type: ignore[arg-type]


def test_vnode_rejects_backing_not_matching_target() -> None:
    with pytest.raises(ValueError, match="backing_mib sums to 100, target_mib is 200"):
        ExportVnode(0, 256, (0,), (10,), 200, 0, (100, 0))


def test_vcpus_must_partition(domain_factory: DomainFactory) -> None:
    vnodes = (
        ExportVnode(0, 256, (0, 1), (10, 20), 256, 0, (256,)),
        ExportVnode(1, 256, (1, 2), (20, 10), 256, 0, (256,)),
    )
    with pytest.raises(ValueError, match="exactly one vnode"):
        ExportDomain("d", "00000000-0000-0000-0000-0000000000cc", 512, 512, vnodes)


def test_uuid_is_canonicalised() -> None:
    vnode = ExportVnode(0, 256, (0,), (10,), 256, 0, (256,))
    domain = ExportDomain("d", "{6F1C2A4E0D3B4C5A9E8F1A2B3C4D5E6F}", 256, 256, (vnode,))
    assert domain.uuid == "6f1c2a4e-0d3b-4c5a-9e8f-1a2b3c4d5e6f"
