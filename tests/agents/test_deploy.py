"""The example configuration in deploy/ is one the agent reads."""

from __future__ import annotations

from pathlib import Path

from numa_balloon_agent.cli import parse

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_parses_into_run_options() -> None:
    args = parse(["run", "--config", str(ROOT / "deploy/agent.example.toml"), "--once"])
    assert args.backend == "libvirt" and args.uri == "qemu:///system"
    assert args.reserved_mib == 4096 and args.interval == 10 and args.once
    assert args.state_dir == Path("/var/lib/numa-balloon-agent")
    assert (
        parse(
            ["run", "--config", str(ROOT / "deploy/agent.example.toml"), "--backend", "xen"]
        ).backend
        == "xen"
    )
    unit = (ROOT / "deploy/numa-balloon-agent.service").read_text()
    # The unit hands /etc/numa-balloon/agent.toml over as a credential (%d is their directory).
    assert "LoadCredential=agent.toml:/etc/numa-balloon/agent.toml\n" in unit
    assert "numa-balloon-agent run --config %d/agent.toml" in unit
