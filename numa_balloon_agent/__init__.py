"""numa-balloon host agent: carries out the control plane's plans on a real machine.

It talks to the service over HTTP only, through `numa_balloon_client` (never `service`), and
drives the machine through one backend: Linux sysfs, libvirt (KVM with virtio-mem) or Xen.
"""
