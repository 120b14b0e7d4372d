"""The host agent's backends: sysfs, libvirt and xen, behind one `Backend` protocol (base)."""
