"""Domain rows -> the export model -> xl.cfg, libvirt XML or xenstore keys."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from service.db.models import Domain
from service.errors import Conflict
from service.exports import ExportDomain, ExportError, ExportVnode, export
from service.exports.libvirt_domain import Definition, to_libvirt_kvm_domain
from service.vocabulary import DomainState


def export_model(domain: Domain, backing: NDArray[np.int64]) -> ExportDomain:
    return ExportDomain(
        name=domain.name,
        uuid=domain.id,
        static_max_mib=domain.static_max_mib,
        target_mib=domain.target_mib,
        block_mib=domain.block_mib,
        dynamic_min_mib=domain.dynamic_min_mib,
        vnodes=tuple(
            ExportVnode(
                index=vn.index,
                size_mib=vn.size_mib,
                vcpus=tuple(vn.vcpus),
                distances=tuple(domain.distances[vn.index]),
                target_mib=vn.target_mib,
                home_pnode=vn.home_pnode if vn.home_pnode is not None else 0,
                backing_mib=tuple(int(m) for m in backing[vn.index].tolist()),
            )
            for vn in domain.vnodes
        ),
    )


def export_domain(
    domain: Domain, backing: NDArray[np.int64], fmt: str, definition: Definition | None = None
) -> str:
    """The domain in `fmt`; `definition` (only for `libvirt-domain`) adds a boot's needs."""
    try:
        model = export_model(domain, backing)
        if definition is not None:
            return to_libvirt_kvm_domain(model, definition=definition)
        return export(model, fmt)
    except ExportError as exc:
        raise Conflict(f"cannot export as {fmt}: {exc.reason}") from None
    except ValueError as exc:
        # The model refuses a vnode whose backing and target disagree. That is no fault of the
        # server: a replug migration's prepare phase unplugs the targets while the backing still
        # carries the memory the guest may be using; the placement is whole again once it ends.
        if domain.state == DomainState.MIGRATING:
            raise Conflict(
                f"cannot export as {fmt} while the domain is migrating: {exc}; "
                "export once the migration has ended"
            ) from None
        raise Conflict(f"cannot export as {fmt}: {exc}") from None
