"""The real-guest end-to-end run (`make e2e`, `python -m e2e`).

A Debian kernel boots under QEMU (TCG) and a private libvirt daemon, with one virtio-mem device
per virtual NUMA node; the real service, the real host agent (`--backend libvirt`) and the
service's own `libvirt-domain` export drive it, and the assertions read the guest kernel's own
per-node `MemTotal` from its serial console. Modules, in the order a run uses them:

- :mod:`e2e.system`: Debian packages, the libvirt binding, the `libvirt-qemu` user;
- :mod:`e2e.kernel`: Debian's kernel package, downloaded and unpacked once under `var/`;
- :mod:`e2e.image`: the guest's initramfs (busybox, the virtio modules, `guest/init.sh`), cached;
- :mod:`e2e.daemons`: virtlogd and libvirtd in a private mount namespace, as a context manager;
- :mod:`e2e.services`: the service (uvicorn on SQLite) and the host agent as processes;
- :mod:`e2e.console`: the guest's serial console, parsed;
- :mod:`e2e.story`: what happens to the guest, phase by phase;
- :mod:`e2e.headline`: the last line of the run.
"""
