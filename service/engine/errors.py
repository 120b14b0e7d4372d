"""Engine exceptions.

The HTTP layer maps these to status codes: ``TopologyError`` to 422 (listing every bad field at
once, so a client fixes its request in one round trip), ``InfeasibleError`` to 409 (the request is
well formed but the host cannot honour it; ``max_feasible_mib`` tells the caller what it could ask
for instead), ``InputError`` to 422 for malformed engine arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EngineError", "InfeasibleError", "InputError", "Issue", "TopologyError"]


class EngineError(Exception):
    """Base class so callers can catch every engine failure with one clause."""


@dataclass(frozen=True, kw_only=True)
class Issue:
    """One problem in a submitted topology, located like a pydantic error ``loc``."""

    loc: tuple[str | int, ...]
    msg: str


class TopologyError(EngineError):
    """A topology is invalid; carries every issue found, not only the first."""

    def __init__(self, issues: tuple[Issue, ...] | list[Issue]) -> None:
        self.issues: tuple[Issue, ...] = tuple(issues)
        summary = "; ".join(f"{'.'.join(str(p) for p in i.loc)}: {i.msg}" for i in self.issues[:5])
        more = f" (+{len(self.issues) - 5} more)" if len(self.issues) > 5 else ""
        super().__init__(f"invalid topology: {summary}{more}")


class InfeasibleError(EngineError):
    """The host cannot back the request; ``max_feasible_mib`` is the best it can do."""

    def __init__(
        self,
        max_feasible_mib: int,
        reason: str,
        *,
        domains: tuple[int, ...] = (),
        per_domain_max_mib: tuple[int, ...] = (),
    ) -> None:
        self.max_feasible_mib = int(max_feasible_mib)
        self.reason = reason
        # Batched calls: every offending domain index and every domain's own maximum.
        self.domains = domains
        self.per_domain_max_mib = per_domain_max_mib
        super().__init__(f"{reason} (max feasible: {self.max_feasible_mib} MiB)")


class InputError(EngineError, ValueError):
    """Engine arguments are inconsistent (shapes, negative sizes): a caller bug or bad input."""
