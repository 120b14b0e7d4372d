"""The real-guest end-to-end run (`make e2e`, `python -m e2e`).

A Debian kernel boots under QEMU (TCG) and a private libvirt daemon, with one virtio-mem device
per virtual NUMA node and the guest agent running inside; the real service, the real host agent
(`--backend libvirt`) and the service's own `libvirt-domain` export drive it, and the assertions
read the guest kernel's own per-node MemTotal and memory blocks from its serial console. A
second private daemon is the host it migrates to. Modules, in the order a run uses them:

- :mod:`e2e.system`: Debian packages, the libvirt binding, the `libvirt-qemu` user;
- :mod:`e2e.kernel`: Debian's kernel package, downloaded and unpacked once under `var/`;
- :mod:`e2e.userland`: Debian's Python and the guest agent for the guest, cached under `var/`;
- :mod:`e2e.image`: the guest's initramfs (busybox, the modules, Python, the agent,
  `guest/init.sh`), cached;
- :mod:`e2e.daemons`: virtlogd and libvirtd in a private mount namespace, as a context manager;
- :mod:`e2e.services`: the service (uvicorn on SQLite) and the host agents as processes;
- :mod:`e2e.definition`: what the operator adds to the export for the guest agent;
- :mod:`e2e.console`: the guest's serial console, parsed;
- :mod:`e2e.story`: what happens to the guest, phase by phase; then :mod:`e2e.stuck` (an unplug
  the guest cannot honour) and :mod:`e2e.migration` (a replug migration to the second host);
- :mod:`e2e.headline`: the last line of the run.
"""
