"""xl.cfg export, checked with Xen's own config parser (libxlutil, Debian package libxenmisc4.17).

The parser is called through ctypes exactly as xl's ``parse_vnuma_config`` calls it:
``xlu_cfg_get_list(cfg, "vnuma")``, then ``xlu_cfg_get_listitem2`` + ``xlu_cfg_value_get_list`` for
each vnode spec, then ``xlu_cfg_get_listitem`` for its ``KEY=VALUE`` strings.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from service.exports import ExportError, ExportVnode, compress_ranges, to_xl
from service.exports.model import ExportDomain
from tests.exports.conftest import DomainFactory, RequireTool

XLU_STRING = 0
XLU_LIST = 1

Nested = list["str | Nested"]


@functools.cache
def _libs() -> tuple[ctypes.CDLL, ctypes.CDLL] | None:
    """libxlutil and libc with prototypes set, or None when libxlutil is not installed."""
    name = ctypes.util.find_library("xlutil")
    if name is None:
        return None
    try:
        xlu = ctypes.CDLL(name)
    except OSError:
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    vp, cp, ci = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    libc.fopen.argtypes, libc.fopen.restype = [cp, cp], vp
    libc.fclose.argtypes, libc.fclose.restype = [vp], ci
    libc.fflush.argtypes, libc.fflush.restype = [vp], ci
    xlu.xlu_cfg_init.argtypes, xlu.xlu_cfg_init.restype = [vp, cp], vp
    xlu.xlu_cfg_readdata.argtypes, xlu.xlu_cfg_readdata.restype = [vp, cp, ci], ci
    xlu.xlu_cfg_destroy.argtypes, xlu.xlu_cfg_destroy.restype = [vp], None
    xlu.xlu_cfg_get_long.argtypes = [vp, cp, ctypes.POINTER(ctypes.c_long), ci]
    xlu.xlu_cfg_get_long.restype = ci
    xlu.xlu_cfg_get_string.argtypes = [vp, cp, ctypes.POINTER(cp), ci]
    xlu.xlu_cfg_get_string.restype = ci
    xlu.xlu_cfg_get_list.argtypes = [vp, cp, ctypes.POINTER(vp), ctypes.POINTER(ci), ci]
    xlu.xlu_cfg_get_list.restype = ci
    xlu.xlu_cfg_get_listitem.argtypes, xlu.xlu_cfg_get_listitem.restype = [vp, ci], cp
    xlu.xlu_cfg_get_listitem2.argtypes, xlu.xlu_cfg_get_listitem2.restype = [vp, ci], vp
    xlu.xlu_cfg_value_type.argtypes, xlu.xlu_cfg_value_type.restype = [vp], ci
    xlu.xlu_cfg_value_get_list.argtypes = [vp, vp, ctypes.POINTER(vp), ci]
    xlu.xlu_cfg_value_get_list.restype = ci
    return xlu, libc


class XlConfig:
    """A config parsed by libxlutil; a context manager that frees the parser and its report file."""

    def __init__(self, text: str, report_path: Path) -> None:
        libs = _libs()
        assert libs is not None
        self._xlu, self._libc = libs
        self._report_path = report_path
        self._report = self._libc.fopen(str(report_path).encode(), b"w")
        assert self._report, "fopen of the report file failed"
        self._cfg = self._xlu.xlu_cfg_init(self._report, b"export.cfg")
        assert self._cfg, "xlu_cfg_init: ENOMEM"
        data = text.encode()
        rc = self._xlu.xlu_cfg_readdata(self._cfg, data, len(data))
        if rc != 0:
            report = self.close()
            raise AssertionError(f"libxlutil rejected the config (errno {rc}):\n{report}\n{text}")

    def close(self) -> str:
        """Free the parser, close the report and return what the parser reported."""
        if self._cfg:
            self._xlu.xlu_cfg_destroy(self._cfg)
            self._cfg = None
        if self._report:
            self._libc.fclose(self._report)
            self._report = None
        return self._report_path.read_text()

    def __enter__(self) -> XlConfig:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def get_long(self, key: str) -> int:
        value = ctypes.c_long()
        rc = self._xlu.xlu_cfg_get_long(self._cfg, key.encode(), ctypes.byref(value), 0)
        assert rc == 0, f"xlu_cfg_get_long({key}) -> errno {rc}"
        return value.value

    def get_string(self, key: str) -> str:
        value = ctypes.c_char_p()
        rc = self._xlu.xlu_cfg_get_string(self._cfg, key.encode(), ctypes.byref(value), 0)
        assert rc == 0 and value.value is not None, f"xlu_cfg_get_string({key}) -> errno {rc}"
        return value.value.decode()

    def _walk(self, lst: int | None, count: int | None = None) -> Nested:
        out: Nested = []
        i = 0
        while count is None or i < count:
            item = self._xlu.xlu_cfg_get_listitem2(lst, i)
            if not item:
                break
            if self._xlu.xlu_cfg_value_type(item) == XLU_LIST:
                inner = ctypes.c_void_p()
                rc = self._xlu.xlu_cfg_value_get_list(self._cfg, item, ctypes.byref(inner), 0)
                assert rc == 0, f"xlu_cfg_value_get_list -> errno {rc}"
                out.append(self._walk(inner.value))
            else:
                # The string accessor xl uses for vnode options.
                text = self._xlu.xlu_cfg_get_listitem(lst, i)
                assert text is not None
                out.append(text.decode())
            i += 1
        return out

    def get_nested_list(self, key: str) -> Nested:
        lst = ctypes.c_void_p()
        count = ctypes.c_int()
        rc = self._xlu.xlu_cfg_get_list(
            self._cfg, key.encode(), ctypes.byref(lst), ctypes.byref(count), 0
        )
        assert rc == 0, f"xlu_cfg_get_list({key}) -> errno {rc}"
        items = self._walk(lst.value, count.value)
        assert len(items) == count.value
        return items


@pytest.fixture
def xl_parse(require_tool: RequireTool, tmp_path: Path) -> Iterator[type[XlConfig]]:
    """Xen's libxlutil parser; skips locally / fails in CI when libxenmisc4.17 is missing."""
    require_tool(_libs() is not None, "libxlutil (Xen's xl config parser)")
    yield XlConfig


def _parse(text: str, tmp_path: Path) -> XlConfig:
    return XlConfig(text, tmp_path / "xlu-report.txt")


def _expected_spec(v: ExportVnode, pnode: int) -> list[str]:
    return [
        f"pnode={pnode}",
        f"size={v.size_mib}",
        f"vcpus={compress_ranges(v.vcpus)}",
        "vdistances=" + ",".join(map(str, v.distances)),
    ]


@pytest.mark.parametrize("k", [1, 2, 4, 16, 32])
def test_libxlutil_parses_vnuma(
    k: int, xl_parse: type[XlConfig], domain_factory: DomainFactory, tmp_path: Path
) -> None:
    domain: ExportDomain = domain_factory(k)
    text = to_xl(domain)
    with _parse(text, tmp_path) as cfg:
        assert cfg.get_string("name") == domain.name
        assert cfg.get_string("uuid") == domain.uuid
        assert cfg.get_long("memory") == domain.target_mib
        assert cfg.get_long("maxmem") == domain.static_max_mib
        assert cfg.get_long("vcpus") == domain.vcpu_count == 2 * k
        assert cfg.get_long("maxvcpus") == domain.vcpu_count
        vnuma = cfg.get_nested_list("vnuma")
        assert len(vnuma) == k
        for v, spec in zip(domain.vnodes, vnuma, strict=True):
            assert spec == _expected_spec(v, v.home_pnode)
        # What xl itself checks after parsing: sizes add up to maxmem, vCPUs partition maxvcpus.
        sizes = [int(str(s[1]).removeprefix("size=")) for s in vnuma if isinstance(s, list)]
        assert sum(sizes) == cfg.get_long("maxmem")
        assert cfg.close() == ""  # no warnings from the parser


def test_libxlutil_reads_irregular_vcpus_and_zero_target(
    xl_parse: type[XlConfig], tmp_path: Path
) -> None:
    """Non-contiguous vCPU sets compress to ranges; a vnode ballooned to 0 uses its home pnode."""
    vnodes = (
        ExportVnode(0, 2048, (0, 1, 2, 3, 5), (10, 21), 2048, 1, (0, 2048)),
        ExportVnode(1, 1024, (4, 6), (21, 10), 0, 0, (0, 0)),
    )
    domain = ExportDomain("irregular", "00000000-0000-0000-0000-000000000001", 3072, 2048, vnodes)
    with _parse(to_xl(domain), tmp_path) as cfg:
        assert cfg.get_nested_list("vnuma") == [
            ["pnode=1", "size=2048", "vcpus=0-3,5", "vdistances=10,21"],
            ["pnode=0", "size=1024", "vcpus=4,6", "vdistances=21,10"],
        ]
        assert cfg.get_long("memory") == 2048
        assert cfg.get_long("maxmem") == 3072
        assert cfg.get_long("vcpus") == 7


@pytest.mark.parametrize(
    "name",
    [
        'evil"; maxmem = 1 #',
        "back\\slash",
        "new\nline\ttab",
        "ünïcødé 名前",
        "it's",
        "ctl\x01\x1f\x7f",
    ],
)
def test_libxlutil_round_trips_hostile_names(
    name: str, xl_parse: type[XlConfig], domain_factory: DomainFactory, tmp_path: Path
) -> None:
    domain = domain_factory(2, name=name)
    with _parse(to_xl(domain), tmp_path) as cfg:
        assert cfg.get_string("name") == name
        assert cfg.get_long("maxmem") == domain.static_max_mib  # nothing injected


def test_libxlutil_wrapper_sees_syntax_errors(xl_parse: type[XlConfig], tmp_path: Path) -> None:
    """The real parser is in the loop: a broken fragment is rejected and reported."""
    with pytest.raises(AssertionError, match="libxlutil rejected the config"):
        _parse('vnuma = [ [ "pnode=0", ]\n', tmp_path)


def test_spread_vnode_is_refused_with_reason(domain_factory: DomainFactory) -> None:
    domain = domain_factory(4, pnodes=4, spread=(2,))
    with pytest.raises(ExportError) as info:
        to_xl(domain)
    assert info.value.reason == (
        "vnode 2 is backed by pnodes 2 and 3; xl vnuma maps each vnode to one pnode"
    )
    assert str(info.value) == info.value.reason


def test_spread_over_three_pnodes_names_them_all() -> None:
    vnode = ExportVnode(0, 3072, (0,), (10,), 3072, 0, (1024, 0, 1024, 1024))
    domain = ExportDomain("d", "00000000-0000-0000-0000-000000000002", 3072, 3072, (vnode,))
    with pytest.raises(ExportError, match=r"vnode 0 is backed by pnodes 0, 2 and 3; xl vnuma"):
        to_xl(domain)


def test_vnode_without_vcpus_is_refused() -> None:
    vnodes = (
        ExportVnode(0, 1024, (0, 1), (10, 20), 1024, 0, (1024,)),
        ExportVnode(1, 1024, (), (20, 10), 512, 0, (512,)),
    )
    domain = ExportDomain("d", "00000000-0000-0000-0000-000000000003", 2048, 1536, vnodes)
    with pytest.raises(ExportError, match="vnode 1 has no vCPUs"):
        to_xl(domain)


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ((0, 1, 2, 3, 5), "0-3,5"),
        ((5, 3, 1, 2, 0), "0-3,5"),
        ((7,), "7"),
        ((), ""),
        ((0, 2, 4), "0,2,4"),
        ((0, 1, 3, 4, 9, 10, 11), "0-1,3-4,9-11"),
        ((1, 1, 2), "1-2"),
    ],
)
def test_compress_ranges(ids: tuple[int, ...], expected: str) -> None:
    assert compress_ranges(ids) == expected


def test_xl_text_shape(domain_factory: DomainFactory) -> None:
    """The documented shape, without the real parser (runs everywhere)."""
    text = to_xl(domain_factory(2))
    assert text.splitlines() == [
        'name = "guest-1"',
        'uuid = "6f1c2a4e-0d3b-4c5a-9e8f-1a2b3c4d5e6f"',
        "memory = 1536",
        "maxmem = 2048",
        "vcpus = 4",
        "maxvcpus = 4",
        "vnuma = [",
        '    [ "pnode=0", "size=1024", "vcpus=0-1", "vdistances=10,20" ],',
        '    [ "pnode=1", "size=1024", "vcpus=2-3", "vdistances=20,10" ]',
        "]",
    ]


def test_require_tool_skips_locally_and_fails_in_ci(
    require_tool: RequireTool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing tool is a skip on a workstation but a failure when CI=true."""
    monkeypatch.delenv("CI", raising=False)
    require_tool(True, "present tool")  # no effect
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y --no-install-recommends"):
        require_tool(False, "missing tool")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: missing tool not available"):
        require_tool(False, "missing tool")
