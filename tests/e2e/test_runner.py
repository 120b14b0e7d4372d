"""`python -m e2e` on a machine that cannot run a real guest: a failure under CI, a skip
elsewhere, each saying why, and nothing started."""

from __future__ import annotations

import pytest

import e2e.__main__ as runner
from e2e import system


def _unavailable(libvirt_python: str, say: system.Say) -> None:
    raise system.Unavailable("apt has no qemu-system-x86 package for this machine")


@pytest.mark.parametrize(("ci", "code", "says"), [(True, 1, "cannot run"), (False, 0, "skipped")])
def test_no_qemu_fails_in_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    ci: bool,
    code: int,
    says: str,
) -> None:
    monkeypatch.setattr(system, "prepare", _unavailable)
    monkeypatch.setattr(runner, "IN_CI", ci)
    monkeypatch.setattr(runner, "play", lambda *a: pytest.fail("nothing may start"))
    assert runner.main([]) == code
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"e2e real-guest: {says}")
    assert last.endswith("apt has no qemu-system-x86 package for this machine")
