"""`numa-balloon`: the command line for people who run a cluster (virsh/xl/openstack style)."""
