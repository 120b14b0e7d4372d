"""xl.cfg(5) export: ``name``, ``uuid``, ``memory``, ``maxmem``, ``vcpus``, ``maxvcpus``, ``vnuma``.

The fragment follows xl.cfg(5) of Xen 4.17 and is checked in the tests with Xen's own parser
(libxlutil). Rules taken from xl.cfg(5) and from xl's ``parse_vnuma_config``:

* every vnode spec carries all four options (xl.cfg(5): "they are all mandatory at the moment"):
  ``pnode=`` (one physical node), ``size=`` (MiB), ``vcpus=`` (ranges such as ``0-3,5``) and
  ``vdistances=`` (the vnode's row, one entry per vnode);
* xl checks that the vnode sizes add up to ``maxmem=``, so ``maxmem`` is the static max, which the
  model guarantees equals the sum of the sizes;
* ``maxvcpus=`` is written as well: without it xl compares the vnuma vCPU count with the *host's*
  online CPUs and refuses a guest with more vCPUs than the host has pCPUs; with it the check is
  against our own count, which is what we mean;
* ``memory=`` is the domain's target. vnuma has no per-vnode target, so a pre-ballooned guest is
  started with the domain target and the per-vnode targets travel through xenstore
  (:mod:`service.exports.xenstore`).

Xen's vnuma maps each vnode to exactly one pnode; a vnode spread over several pnodes cannot be
expressed and raises :class:`ExportError` (HTTP 409) instead of silently picking one of them.
"""

from __future__ import annotations

from service.exports.model import ExportDomain, ExportError, ExportVnode, compress_ranges

__all__ = ["to_xl", "xl_quote"]

_NAMED_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def xl_quote(value: str) -> str:
    """Quote a string for an xl config file.

    libxlutil's lexer takes double-quoted strings with C-like backslash escapes (``\\"``,
    ``\\\\``, ``\\n``, ``\\t``, ...). Escaping keeps a hostile domain name from closing the
    string and injecting settings. NUL cannot be represented (the parser works on C strings).
    """
    if "\0" in value:
        raise ExportError("the domain name contains a NUL character, which xl.cfg cannot hold")
    out: list[str] = []
    for ch in value:
        # Other control characters go in raw: the lexer accepts any byte but quote, backslash and
        # newline inside a quoted string, while its numeric escapes (\\xHH, octal) are rejected
        # by libxlutil 4.17 itself ("invalid digit after backslash"), so they are not usable.
        out.append(_NAMED_ESCAPES.get(ch, ch))
    return '"' + "".join(out) + '"'


def _xl_pnode(vnode: ExportVnode) -> int:
    """The single pnode of a vnode, or ExportError when its memory is spread.

    A vnode ballooned to zero has no backing and is given its home pnode, where its vCPUs run.
    """
    pnodes = vnode.backing_pnodes
    if len(pnodes) > 1:
        listed = ", ".join(str(p) for p in pnodes[:-1]) + f" and {pnodes[-1]}"
        raise ExportError(
            f"vnode {vnode.index} is backed by pnodes {listed}; "
            "xl vnuma maps each vnode to one pnode"
        )
    return pnodes[0] if pnodes else vnode.home_pnode


def _vnode_spec(vnode: ExportVnode) -> str:
    if not vnode.vcpus:
        raise ExportError(
            f"vnode {vnode.index} has no vCPUs; xl vnuma requires vcpus= in every vnode spec"
        )
    options = (
        f"pnode={_xl_pnode(vnode)}",
        f"size={vnode.size_mib}",
        f"vcpus={compress_ranges(vnode.vcpus)}",
        "vdistances=" + ",".join(str(d) for d in vnode.distances),
    )
    return "[ " + ", ".join(f'"{o}"' for o in options) + " ]"


def to_xl(domain: ExportDomain) -> str:
    """Render the domain as an xl.cfg fragment (memory sizes in MiB), ending with a newline.

    Raises :class:`ExportError` when a vnode is spread over several pnodes or has no vCPUs.
    """
    specs = [_vnode_spec(v) for v in domain.vnodes]
    vcpus = domain.vcpu_count
    lines = [
        f"name = {xl_quote(domain.name)}",
        f'uuid = "{domain.uuid}"',
        f"memory = {domain.target_mib}",
        f"maxmem = {domain.static_max_mib}",
        f"vcpus = {vcpus}",
        f"maxvcpus = {vcpus}",
        "vnuma = [",
        *(f"    {spec}," if i < len(specs) - 1 else f"    {spec}" for i, spec in enumerate(specs)),
        "]",
    ]
    return "\n".join(lines) + "\n"
