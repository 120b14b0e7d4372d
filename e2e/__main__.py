"""`python -m e2e` (what `make e2e` runs): prepare the machine, then play the real-guest story
with the private libvirt, the service and the host agent, and print the headline last.

A machine that cannot run it (no QEMU package from apt, not root) fails under CI=true and is
skipped elsewhere, saying why. Everything started is stopped on the way out, also after a failure
or Ctrl-C; the work directory (logs, console, domain XML) is kept only when the run failed or
`--keep` asks for it. `var/e2e/` keeps the kernel, the guest image and libvirt's QEMU probe."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import FrameType

from e2e import image, kernel, system
from e2e.daemons import PrivateLibvirt
from e2e.services import HostAgent, Service
from e2e.story import Story, StoryFailed
from numa_balloon_client import Client

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def say(message: str) -> None:
    print(f"e2e: {message}", flush=True)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m e2e", description=__doc__.splitlines()[0])
    p.add_argument("--var", type=Path, default=ROOT / "var" / "e2e", help="the cache (var/e2e)")
    p.add_argument(
        "--libvirt-python",
        default=os.environ.get("LIBVIRT_PYTHON", "libvirt-python"),
        help="pip requirement of the libvirt binding, when it is missing",
    )
    p.add_argument("--interval", type=float, default=1.0, help="the host agent's --interval")
    p.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    return p.parse_args(argv)


def prepare(args: argparse.Namespace) -> tuple[kernel.Kernel, Path] | str:
    """The kernel and the guest image, or why this machine cannot run the story."""
    start = time.monotonic()
    try:
        done = system.prepare(args.libvirt_python)
    except system.Unavailable as exc:
        return str(exc)
    var = args.var.resolve()
    k = kernel.fetch(var / "kernel", done)
    initrd = image.build(image.default_layers(k), var / "image", done)
    say(
        f"prepared in {time.monotonic() - start:.1f} s: "
        + ("; ".join(done) if done else "everything was there")
        + f" (kernel {k.release}, image {initrd.name})"
    )
    return k, initrd


def play(args: argparse.Namespace, k: kernel.Kernel, initrd: Path, workdir: Path) -> str:
    token = secrets.token_urlsafe(24)
    with (
        PrivateLibvirt(workdir / "libvirt", args.var.resolve() / "libvirt-cache") as lv,
        Service(workdir / "service", token=token) as service,
        HostAgent(
            workdir / "agent",
            url=service.url,
            admin_token=token,
            uri=lv.uri,
            name="e2e-host",
            interval_s=args.interval,
        ) as agent,
        Client(service.url, token, timeout_s=30) as admin,
    ):
        say(f"libvirtd at {lv.uri}; service at {service.url}; host agent every {args.interval} s")
        conn = lv.open()
        try:
            story = Story(admin, conn, agent, workdir, k.vmlinuz.resolve(), initrd, say=say)
            outcome = story.play()
        except BaseException:
            for name, path in (
                ("host agent", agent.log),
                ("service", service.log),
                ("guest console", workdir / "console.log"),
            ):
                if path.exists():
                    lines = path.read_text(errors="replace").splitlines()[-12:]
                    print(f"--- {name} ({path})", *lines, sep="\n", file=sys.stderr)
            raise
        finally:
            conn.close()
    return str(outcome.headline())


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C: everything cleaned up
    prepared = prepare(args)
    if isinstance(prepared, str):
        if IN_CI:
            print(f"e2e real-guest: cannot run on this machine under CI: {prepared}")
            return 1
        print(f"e2e real-guest: skipped: {prepared}")
        return 0
    k, initrd = prepared
    workdir = Path(tempfile.mkdtemp(prefix="nb-e2e-"))
    keep = args.keep
    try:
        headline = play(args, k, initrd, workdir)
    except (StoryFailed, TimeoutError, RuntimeError) as exc:
        keep = True
        print(f"e2e: FAILED: {exc}", file=sys.stderr)
        print(f"e2e: logs kept in {workdir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        keep = True
        print(f"\ne2e: interrupted; everything stopped; logs kept in {workdir}", file=sys.stderr)
        return 130
    except Exception:
        keep = True
        traceback.print_exc()
        print(f"e2e: logs kept in {workdir}", file=sys.stderr)
        return 1
    finally:
        if not keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    if args.keep:
        say(f"work directory kept: {workdir}")
    print(headline, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
