"""libvirt export, validated with libvirt's own RelaxNG schemas through ``virt-xml-validate``.

On Debian 12 ``virt-xml-validate`` ships in ``libvirt-clients``, the schemas
(/usr/share/libvirt/schemas/domain.rng) in ``libvirt0`` (a dependency of it) and ``xmllint``, which
the script runs, in ``libxml2-utils``.
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from service.exports import ExportDomain, ExportError, ExportVnode, to_libvirt, to_libvirt_domain
from tests.exports.conftest import DomainFactory, RequireTool

Validate = Callable[[str], None]


@pytest.fixture
def validate(require_tool: RequireTool, tmp_path: Path) -> Validate:
    """Run ``virt-xml-validate <file> domain`` and fail with its output when the XML is invalid."""
    tool = shutil.which("virt-xml-validate")
    require_tool(tool is not None and shutil.which("xmllint") is not None, "virt-xml-validate")
    schema = Path("/usr/share/libvirt/schemas/domain.rng")
    require_tool(schema.exists(), f"libvirt schema {schema}")
    assert tool is not None

    def run(xml: str) -> None:
        path = tmp_path / "domain.xml"
        path.write_text(xml, encoding="utf-8")
        proc = subprocess.run(
            [tool, str(path), "domain"], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, f"virt-xml-validate failed:\n{proc.stdout}{proc.stderr}\n{xml}"

    return run


def _cells(xml: str) -> list[ET.Element]:
    if xml.startswith("<cpu>"):  # the fragment: <cpu> then <numatune>, parse the first
        xml = xml.split("</cpu>")[0] + "</cpu>"
    root = ET.fromstring(xml)
    numa = root.find("numa") if root.tag == "cpu" else root.find("cpu/numa")
    assert numa is not None
    return numa.findall("cell")


@pytest.mark.parametrize("k", [1, 2, 4, 16])
def test_domain_validates_against_libvirt_schema(
    k: int, validate: Validate, domain_factory: DomainFactory
) -> None:
    domain = domain_factory(k)
    xml = to_libvirt_domain(domain)
    validate(xml)
    root = ET.fromstring(xml)
    assert root.get("type") == "kvm"
    assert root.findtext("memory") == str(domain.static_max_mib)
    assert root.findtext("currentMemory") == str(domain.target_mib)
    assert root.findtext("vcpu") == str(2 * k)
    cells = _cells(xml)
    assert [c.get("id") for c in cells] == [str(i) for i in range(k)]
    memnodes = root.findall("numatune/memnode")
    assert [m.get("nodeset") for m in memnodes] == [str(v.home_pnode) for v in domain.vnodes]
    assert all(m.get("mode") == "strict" for m in memnodes)


def test_spread_vnode_validates_with_nodeset(
    validate: Validate, domain_factory: DomainFactory
) -> None:
    domain = domain_factory(4, pnodes=4, spread=(2,))
    xml = to_libvirt_domain(domain)
    validate(xml)
    root = ET.fromstring(xml)
    memnode = root.find("numatune/memnode[@cellid='2']")
    assert memnode is not None
    assert memnode.get("nodeset") == "2-3"  # pnodes 2 and 3, range syntax
    memory = root.find("numatune/memory")
    assert memory is not None
    assert memory.attrib == {"mode": "strict", "nodeset": "0-3"}


def test_non_adjacent_spread_lists_nodes(validate: Validate) -> None:
    vnode = ExportVnode(0, 2048, (0, 1), (10,), 2048, 0, (1024, 0, 0, 1024))
    domain = ExportDomain("s", "00000000-0000-0000-0000-00000000000a", 2048, 2048, (vnode,))
    xml = to_libvirt_domain(domain)
    validate(xml)
    assert '<memnode cellid="0" mode="strict" nodeset="0,3" />' in xml


def test_memory_only_cell_and_zero_target_validate(validate: Validate) -> None:
    """A cell without vCPUs has no cpus= (libvirt allows it); a 0-target vnode binds to home."""
    vnodes = (
        ExportVnode(0, 1024, (0, 1), (10, 20), 1024, 0, (1024, 0)),
        ExportVnode(1, 1024, (), (20, 10), 0, 1, (0, 0)),
    )
    domain = ExportDomain("m", "00000000-0000-0000-0000-00000000000b", 2048, 1024, vnodes)
    xml = to_libvirt_domain(domain)
    validate(xml)
    cells = _cells(xml)
    assert cells[0].get("cpus") == "0-1"
    assert "cpus" not in cells[1].attrib
    root = ET.fromstring(xml)
    assert [m.get("nodeset") for m in root.findall("numatune/memnode")] == ["0", "1"]


def test_weird_name_is_escaped_and_validates(
    validate: Validate, domain_factory: DomainFactory
) -> None:
    name = "<evil & \"quoted\" 'name'>]]>"
    xml = to_libvirt_domain(domain_factory(2, name=name))
    validate(xml)
    assert "<evil" not in xml
    assert ET.fromstring(xml).findtext("name") == name


def test_name_with_newline_or_control_char_is_refused(domain_factory: DomainFactory) -> None:
    for name in ("two\nlines", "bell\x07"):
        with pytest.raises(ExportError, match="libvirt domain name cannot hold"):
            to_libvirt_domain(domain_factory(1, name=name))


def test_cell_memory_equals_vnode_size(domain_factory: DomainFactory) -> None:
    domain = domain_factory(4, size_mib=4096, ballooned_mib=1024)
    cells = _cells(to_libvirt(domain))
    assert [int(c.get("memory", "-1")) for c in cells] == [v.size_mib for v in domain.vnodes]
    assert all(c.get("unit") == "MiB" for c in cells)
    assert sum(int(c.get("memory", "0")) for c in cells) == domain.static_max_mib


def test_fragment_shape(domain_factory: DomainFactory) -> None:
    """The fragment is two pretty-printed top-level elements: <cpu> and <numatune>."""
    text = to_libvirt(domain_factory(2))
    assert text == (
        "<cpu>\n"
        "  <numa>\n"
        '    <cell id="0" cpus="0-1" memory="1024" unit="MiB">\n'
        "      <distances>\n"
        '        <sibling id="0" value="10" />\n'
        '        <sibling id="1" value="20" />\n'
        "      </distances>\n"
        "    </cell>\n"
        '    <cell id="1" cpus="2-3" memory="1024" unit="MiB">\n'
        "      <distances>\n"
        '        <sibling id="0" value="20" />\n'
        '        <sibling id="1" value="10" />\n'
        "      </distances>\n"
        "    </cell>\n"
        "  </numa>\n"
        "</cpu>\n"
        "<numatune>\n"
        '  <memory mode="strict" nodeset="0-1" />\n'
        '  <memnode cellid="0" mode="strict" nodeset="0" />\n'
        '  <memnode cellid="1" mode="strict" nodeset="1" />\n'
        "</numatune>\n"
    )
    # Each part is well-formed XML on its own.
    cpu_part, numatune_part = text.split("</cpu>\n")
    ET.fromstring(cpu_part + "</cpu>")
    ET.fromstring(numatune_part)


def test_fragment_validates_inside_the_wrapper(
    validate: Validate, domain_factory: DomainFactory
) -> None:
    """The fragment is exactly what the wrapper embeds, so validating the wrapper covers it."""
    domain = domain_factory(4)
    fragment = to_libvirt(domain)
    wrapper = to_libvirt_domain(domain)
    indented = "".join(f"  {line}\n" if line else "\n" for line in fragment.splitlines())
    assert indented in wrapper
    validate(wrapper)


def test_validator_rejects_invalid_xml(validate: Validate, domain_factory: DomainFactory) -> None:
    """The real schema is in the loop: a memnode with an unknown mode must not validate."""
    xml = to_libvirt_domain(domain_factory(2)).replace('mode="strict"', 'mode="bogus"')
    with pytest.raises(AssertionError, match="virt-xml-validate failed"):
        validate(xml)
