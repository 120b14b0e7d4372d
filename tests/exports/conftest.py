"""Shared fixtures of the export tests: sample domains and the tool-availability rule.

The exports are checked with the real tools (libvirt's schemas, Xen's libxlutil). Locally a missing
tool makes its test skip with the install hint; in CI (``CI=true``) the same test fails, so a CI
image that lost a package cannot turn the real checks into silent skips.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import pytest

from service.exports.model import ExportDomain, ExportVnode

#: The Debian 12 packages that provide every tool these tests use.
DEBIAN_INSTALL = (
    "apt-get install -y --no-install-recommends libvirt-clients libxml2-utils libxenmisc4.17"
)

RequireTool = Callable[[bool, str], None]


def in_ci() -> bool:
    """True when the environment says it is CI (GitHub Actions, GitLab and others set CI=true)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _require_tool(available: bool, what: str) -> None:
    if available:
        return
    message = f"{what} not available; install with: {DEBIAN_INSTALL}"
    if in_ci():
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def require_tool() -> RequireTool:
    """``require_tool(available, what)``: skip locally / fail in CI when a tool is missing."""
    return _require_tool


def make_domain(
    k: int,
    *,
    vcpus_per_vnode: int = 2,
    size_mib: int = 1024,
    pnodes: int | None = None,
    spread: Sequence[int] = (),
    name: str = "guest-1",
    ballooned_mib: int = 256,
) -> ExportDomain:
    """A valid k-vnode domain: vnode v on pnode ``v % pnodes``, SLIT-like distances.

    Each vnode's target is ``size_mib - ballooned_mib``; a vnode listed in ``spread`` has its
    memory split between its pnode and the next one, which xl cannot express.
    """
    n_pnodes = pnodes if pnodes is not None else max(2, min(k, 8))
    target = size_mib - ballooned_mib
    vnodes: list[ExportVnode] = []
    for v in range(k):
        home = v % n_pnodes
        backing = [0] * n_pnodes
        if v in spread:
            other = (home + 1) % n_pnodes
            backing[home] = target // 2
            backing[other] = target - target // 2
        else:
            backing[home] = target
        distances = tuple(10 if u == v else (20 if abs(u - v) == 1 else 30) for u in range(k))
        vnodes.append(
            ExportVnode(
                index=v,
                size_mib=size_mib,
                vcpus=tuple(range(v * vcpus_per_vnode, (v + 1) * vcpus_per_vnode)),
                distances=distances,
                target_mib=target,
                home_pnode=home,
                backing_mib=tuple(backing),
            )
        )
    return ExportDomain(
        name=name,
        uuid="6f1c2a4e-0d3b-4c5a-9e8f-1a2b3c4d5e6f",
        static_max_mib=k * size_mib,
        target_mib=k * target,
        vnodes=tuple(vnodes),
    )


DomainFactory = Callable[..., ExportDomain]


@pytest.fixture
def domain_factory() -> DomainFactory:
    """The :func:`make_domain` builder, as a fixture so tests need not import conftest."""
    return make_domain
