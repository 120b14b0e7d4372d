"""`python -m e2e` (what `make e2e` runs): prepare the machine, then play the real-guest story
with two private libvirt daemons (two hosts), the service, the host agents and the guest agent
in the guest, and print the headline last.

A machine that cannot run it (no QEMU package from apt, not root) fails under CI=true and is
skipped elsewhere, saying why. Everything started is stopped on the way out, also after a failure
or Ctrl-C (or SIGTERM); the work directory (logs, console, domain XML) is kept only when the run
failed or `--keep` asks for it. `var/e2e/` keeps the kernel, the guest's Python and agent, the
guest image and libvirt's QEMU probe for the next run."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import FrameType

from e2e import image, kernel, migration, stuck, system, userland
from e2e.daemons import PrivateLibvirt
from e2e.migration import Destination
from e2e.observe import observe
from e2e.services import HostAgent, Service
from e2e.story import Story, StoryFailed
from numa_balloon_client import Client

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"e2e [{time.monotonic() - STARTED:6.1f} s] {message}", flush=True)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    """The first Ctrl-C or SIGTERM stops the run; later ones must not cut its cleanup short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
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
    p.add_argument(
        "--observe",
        action="store_true",
        help="then describe what targets the service does not handle yet do (e2e/observe.py)",
    )
    return p.parse_args(argv)


def guest_files(var: Path) -> tuple[Path, Path]:
    """The guest's kernel and initramfs, from the cache or made into it."""
    k = kernel.fetch(var / "kernel", say)
    python = userland.interpreter(var / "userland", say)
    agent = userland.agent(var / "userland", python, say)
    initrd = image.build(image.default_layers(k, python, agent), var / "image", say)
    return k.boot_image().resolve(), initrd


def play(args: argparse.Namespace, workdir: Path) -> str:
    """Start everything (the service first: it migrates and imports while the guest's files and
    libvirt are made ready), play the story, and stop everything in reverse order."""
    var = args.var.resolve()
    with contextlib.ExitStack() as stack:
        service = stack.enter_context(Service(workdir / "service"))
        boot, initrd = guest_files(var)
        say(f"guest: kernel {boot}, initramfs {initrd} ({initrd.stat().st_size >> 20} MiB)")
        cache = var / "libvirt-cache"
        lv = stack.enter_context(PrivateLibvirt(workdir / "libvirt", cache))
        lv_b = stack.enter_context(PrivateLibvirt(workdir / "libvirt-b", cache))
        say(f"libvirtd at {lv.uri}; a second one (another host) at {lv_b.uri}")
        service.wait_ready()
        agent = stack.enter_context(
            HostAgent(
                workdir / "agent",
                url=service.url,
                admin_token=service.token,
                uri=lv.uri,
                name="e2e-host",
                interval_s=args.interval,
                migrate_uri=lv_b.migrate_uri,
            )
        )
        say(f"service at {service.url}; numa-balloon-agent every {args.interval} s")
        admin = stack.enter_context(Client(service.url, service.token, timeout_s=30))
        conn = lv.open()
        stack.callback(conn.close)
        story = Story(admin, conn, agent, workdir, boot, initrd, service.port, say=say)
        stack.callback(story.close)

        def destination() -> Destination:
            memory = admin.get_host(story.host_id).pnodes[0].memory_mib
            host_id, token = migration.register_destination(admin, "e2e-host-b", memory)
            agent_b = stack.enter_context(
                HostAgent(
                    workdir / "agent-b",
                    url=service.url,
                    admin_token=service.token,
                    uri=lv_b.uri,
                    name="e2e-host-b",
                    interval_s=args.interval,
                    host=(host_id, token),
                )
            )
            story.all_agents = [agent, agent_b]
            conn_b = lv_b.open()
            stack.callback(conn_b.close)
            return Destination(conn_b, agent_b, host_id, token)

        try:
            outcome = story.play()
            stuck.below_the_floor(story)
            migration.migrate(story, destination)
            outcome.migration = "ok"
            say(f"guest agent: {story.count_agent_ops()} block state changes, each the kernel's")
            if args.observe:
                observe(story)
        except BaseException:
            _show_logs(story, service, workdir)
            raise
    return str(outcome.headline())


def _show_logs(story: Story, service: Service, workdir: Path) -> None:
    logs = [(f"host agent {a.workdir.name}", a.log) for a in story.agents()]
    logs += [("service", service.log), ("guest console", workdir / "console.log")]
    for name, path in logs:
        if path.exists():
            lines = path.read_text(errors="replace").splitlines()[-15:]
            print(f"--- {name} ({path})", *lines, sep="\n", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        system.prepare(args.libvirt_python, say)
    except system.Unavailable as exc:
        if IN_CI:
            print(f"e2e real-guest: cannot run on this machine under CI: {exc}")
            return 1
        print(f"e2e real-guest: skipped: {exc}")
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="nb-e2e-"))
    keep = args.keep
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:  # from here a Ctrl-C or SIGTERM stops the run with everything cleaned up
        headline = play(args, workdir)
    except (StoryFailed, TimeoutError) as exc:
        keep = True
        print(f"e2e: FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        keep = True
        print("\ne2e: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    except Exception:
        keep = True
        traceback.print_exc()
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if keep:
            print(f"e2e: work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(headline, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
