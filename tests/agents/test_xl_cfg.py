"""Reading xl.cfg files as xl does: the uuid whatever the quoting, comments and layout; the
vnuma specs' `pnode=` rewritten per vnode; and the override xl appends after the file, checked
with Xen's own parser (libxlutil) that it wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from numa_balloon_agent.backends import xl_cfg
from numa_balloon_agent.backends.xl_cfg import XlCfgError, find_config, parse, vnuma_setting
from tests.exports.conftest import _require_tool
from tests.exports.test_xl import XlConfig, _libs

UUID = "0b7e5c1a-3f8d-4a52-b0e4-6c1d2e3f4a5b"


def _need_libxlutil() -> None:
    """Skip locally (fail in CI) without Xen's parser, as the export tests do."""
    _require_tool(_libs() is not None, "libxlutil (Xen's xl config parser)")


@pytest.mark.parametrize(
    "text",
    [
        f'uuid = "{UUID}"\n',
        f"uuid='{UUID.upper()}'",  # single quotes, no newline at the end
        f'name = "a"; uuid = "{{{UUID}}}" # braces\n',
        f'# uuid = "00000000-0000-0000-0000-000000000000"\nuuid = "{UUID.replace("-", "")}"\n',
        f'uuid = "00000000-0000-0000-0000-000000000000"\nuuid = "{UUID}"\n',  # the last wins
        f'extra = "uuid = \\"x\\" # no comment"\ndisk = [\n  "a",\n  "b",\n]\nuuid = "{UUID}"\n',
    ],
)
def test_the_uuid_is_read_as_xl_reads_it(text: str, tmp_path: Path) -> None:
    value = parse(text).get("uuid")
    assert xl_cfg.same_uuid(value, UUID)
    _need_libxlutil()
    with XlConfig(text, tmp_path / "report.txt") as cfg:
        assert cfg.get_string("uuid") == value  # what Xen's own parser reads


@pytest.mark.parametrize(
    "text",
    [
        '# uuid = "0b7e5c1a-3f8d-4a52-b0e4-6c1d2e3f4a5b"\n',
        'name = "uuid = 0b7e5c1a-3f8d-4a52-b0e4-6c1d2e3f4a5b"\n',
        'uuid = "not-a-uuid"\n',
        "uuid = [ 'x' ]\n",
    ],
)
def test_no_uuid_or_not_this_one(text: str) -> None:
    assert not xl_cfg.same_uuid(parse(text).get("uuid"), UUID)


@pytest.mark.parametrize(
    ("text", "where"),
    [('name = "open\n', "line 1"), ("a = 1\nb = = 2\n", "line 2"), ("a = [1, 2\n", "line 2")],
)
def test_what_xl_would_not_read_is_an_error(text: str, where: str, tmp_path: Path) -> None:
    with pytest.raises(XlCfgError, match=where):
        parse(text)
    _need_libxlutil()
    with pytest.raises(AssertionError, match="libxlutil rejected"):
        XlConfig(text, tmp_path / "report.txt")


def test_plus_equals_appends_to_a_list() -> None:
    assert parse("disk = ['a']\ndisk += ['b']\n")["disk"] == ["a", "b"]


def test_vnuma_pnodes_are_rewritten_per_vnode() -> None:
    settings = parse(
        "vnuma = [ [ 'pnode=0', 'size=1024', 'vcpus=0', 'vdistances=10,20,20' ],\n"
        "  [ 'size=1024', ' pnode = 1 ', 'vcpus=1', 'vdistances=20,10,20' ],\n"
        "  [ 'size=1024', 'vcpus=2', 'vdistances=20,20,10' ] ]\n"
    )
    specs = xl_cfg.vnuma_with_pnodes(settings, [3, None, 2])
    assert specs == [
        ["pnode=3", "size=1024", "vcpus=0", "vdistances=10,20,20"],
        ["size=1024", " pnode = 1 ", "vcpus=1", "vdistances=20,10,20"],  # None keeps the file's
        ["pnode=2", "size=1024", "vcpus=2", "vdistances=20,20,10"],  # none there: added
    ]
    assert xl_cfg.vnuma_with_pnodes(parse("memory = 1024\n"), [0]) is None
    with pytest.raises(XlCfgError, match="3 vnode spec"):
        xl_cfg.vnuma_with_pnodes(settings, [0, 1])
    with pytest.raises(XlCfgError, match="not a list of vnode specs"):
        xl_cfg.vnuma_with_pnodes(parse("vnuma = 'pnode=0'\n"), [0])
    assert vnuma_setting([['a"b\\c'], ["x"]]) == 'vnuma=[["a\\"b\\\\c"], ["x"]]'


def test_find_config_searches_cfg_files_then_auto(tmp_path: Path) -> None:
    (tmp_path / "auto").mkdir()
    (tmp_path / "xl.conf").write_text(f'uuid = "{UUID}"\n')  # not a .cfg: not a domain's
    (tmp_path / "bad.cfg").write_bytes(b"\xff\xfe")
    (tmp_path / "other.cfg").write_text('uuid = "5d2f0a9e-7c41-4b8e-9f3a-1e2d3c4b5a69"\n')
    found = find_config(tmp_path, UUID)
    assert found.path is None and len(found.skipped) == 1 and "bad.cfg" in found.skipped[0]
    (tmp_path / "auto/guest").write_text(f'uuid = "{UUID}"\n')  # any name under auto/
    assert find_config(tmp_path, UUID).path == tmp_path / "auto/guest"


def test_libxlutil_takes_the_override_xl_create_appends(tmp_path: Path) -> None:
    """`xl create FILE 'vnuma=[...]'`: xl reads FILE, appends "\\n" + the pair + "\\n" and
    parses the whole; the override's vnuma is the one xl's parse_vnuma_config gets."""
    _need_libxlutil()
    text = (
        f'name = "g"\nuuid = "{UUID}"\nmemory = 2048\nmaxmem = 2048\nvcpus = 2\n'
        "vnuma = [ [ 'pnode=0', 'size=1024', 'vcpus=0', 'vdistances=10,21' ],\n"
        "          [ 'pnode=0', 'size=1024', 'vcpus=1', 'vdistances=21,10' ] ]  # both on 0\n"
    )
    specs = xl_cfg.vnuma_with_pnodes(parse(text), [1, 0])
    assert specs is not None
    override = vnuma_setting(specs)
    with XlConfig(f"{text}\n{override}\n", tmp_path / "report.txt") as cfg:
        got = cfg.get_nested_list("vnuma")
        assert got == specs and got[0][0] == "pnode=1"
        assert cfg.get_string("uuid") == UUID
