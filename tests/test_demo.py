"""`make demo` end to end: the simulator against a real uvicorn on SQLite, as a user runs it.

The story is seeded and the service's clock is real but fast (inactive after 1 s, uncooperative
after 2 s), so the outcomes below are the same on every run. The timeout only guards against a
hang (a loaded machine may take several times the usual ~20 s): speed is measured in bench/.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from service.db.invariants import mib_by_pnode
from service.db.models import Backing, Claim, Domain, Pnode, Vnode
from service.db.session import make_engine, make_sessionmaker

ROOT = Path(__file__).resolve().parents[1]


def test_make_demo_plays_the_whole_story(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "demo",
            "--local",
            "--workdir",
            str(tmp_path / "svc"),
            "--summary-json",
            str(summary_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "[########################] 8/8 audit the accounting ... clean" in out
    assert "numa-balloon demo: 4 hosts, 8 guests" in out
    s = json.loads(summary_path.read_text())

    assert s["template_vnodes"] == 16
    placement = s["placement"]
    assert [placement[n] for n in ("web", "db", "batch", "cache")] == ["lab-1node"] * 4
    assert placement["build"] in ("dell-2socket", "epyc-nps4", "xeon-4s-snc4")

    # Squeeze: the stuck driver is flagged, then held; the newcomer fits.
    assert s["uncooperative"] == ["batch"]
    assert s["held_in_second_squeeze"] is True
    assert s["free_before_admit_mib"] >= 8192 and s["admitted"] == "lab-1node"

    # The seed thread's migration: 1 node -> 16 nodes, unplug/replug, distortion falls.
    mig = s["migration"]
    assert mig["state"] == "completed" and mig["host"] == "xeon-4s-snc4"
    assert mig["distortion_after"] < mig["distortion_before"]
    assert mig["moved_mib"] > 0 and mig["steps"] > 5

    reb = s["rebalance"]
    assert reb is not None and reb["host"] == "dell-2socket" and reb["moves"] > 0
    assert reb["distortion_after"] < reb["distortion_before"]

    # The stuck guest cannot unplug: its migration stalls in prepare and is aborted cleanly.
    ab = s["abort"]
    assert ab["stalled_in"] == "preparing" and ab["state"] == "aborted"
    assert ab["claimed_mib_during"] > 0 and ab["claimed_mib_after"] == 0
    assert ab["domain_host"] == "lab-1node"

    assert s["audit_problems"] == [] and s["claimed_mib_total"] == 0
    audit_rows(f"sqlite:///{tmp_path / 'svc' / 'numa-balloon.db'}")


def audit_rows(db_url: str) -> None:
    """From the rows: claimed = Σ claims (none left), allocated = Σ backing plus what the
    uncooperative guest still holds above its target, and every pnode within its capacity."""
    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine)() as s:
            backing = mib_by_pnode(s, Backing)
            assert s.scalar(select(func.count()).select_from(Claim)) == 0
            held: dict[str | None, int] = {}
            for d, vn in s.execute(
                select(Domain, Vnode).join(Vnode).where(Domain.uncooperative)
            ).all():
                extra = max((vn.actual_mib or 0) - vn.target_mib, 0)
                if extra:
                    held[d.host_id] = held.get(d.host_id, 0) + extra
            assert held, "the stuck guest holds memory above its target"
            over: dict[str | None, int] = {}
            for pn in s.scalars(select(Pnode)).all():
                assert pn.claimed_mib == 0
                assert pn.allocated_mib + pn.claimed_mib <= pn.capacity_mib
                extra = pn.allocated_mib - backing.get((pn.host_id, pn.index), 0)
                assert extra >= 0
                if extra:
                    over[pn.host_id] = over.get(pn.host_id, 0) + extra
            assert over == held
    finally:
        engine.dispose()
