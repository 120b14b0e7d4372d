"""Export formats of a domain's virtual NUMA topology: xl.cfg vnuma, libvirt XML, xenstore keys.

Each exporter takes an :class:`ExportDomain` (plain ints, no numpy or ORM) and returns text. When
a format cannot express the domain, it raises :class:`ExportError`, whose ``reason`` the HTTP
layer returns with status 409 (``GET /v1/domains/{id}/export?format=...``).
"""

from service.exports.libvirt import to_libvirt, to_libvirt_domain
from service.exports.libvirt_domain import to_libvirt_kvm_domain
from service.exports.model import ExportDomain, ExportError, ExportVnode, compress_ranges
from service.exports.xenstore import to_xenstore, xenstore_keys
from service.exports.xl import to_xl

__all__ = [
    "EXPORTERS",
    "ExportDomain",
    "ExportError",
    "ExportVnode",
    "compress_ranges",
    "export",
    "to_libvirt",
    "to_libvirt_domain",
    "to_libvirt_kvm_domain",
    "to_xenstore",
    "to_xl",
    "xenstore_keys",
]

#: format name (the API's ``?format=``) -> exporter.
EXPORTERS = {
    "xl": to_xl,
    "libvirt": to_libvirt,
    "libvirt-domain": to_libvirt_kvm_domain,
    "xenstore": to_xenstore,
}


def export(domain: ExportDomain, fmt: str) -> str:
    """Render ``domain`` in ``fmt`` (``xl``, ``libvirt``, ``libvirt-domain`` or ``xenstore``).

    One entry point so the API route needs no per-format branching; an unknown format is a
    ``ValueError`` (the route validates ``format`` and answers 422 before calling this).
    """
    try:
        exporter = EXPORTERS[fmt]
    except KeyError:
        raise ValueError(
            f"unknown export format {fmt!r}; expected one of {sorted(EXPORTERS)}"
        ) from None
    return exporter(domain)
