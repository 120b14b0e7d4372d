#!/bin/busybox sh
# /init of the e2e guest (e2e/image.py packs it with busybox, the modules, Python and the agent).
# It loads the modules, brings up QEMU's user-mode network, starts the guest agent with the URL
# and token the host passed through fw_cfg, and prints on the serial console each NUMA node's
# MemTotal and every memory block's state whenever they change (polled every 0.2 s without
# forking) and every 5 s anyway. Hot-plugged blocks are left offline by the kernel (the domain's
# memhp_default_state=offline): the agent onlines them. e2e/console.py parses the lines:
#   nb-e2e: init uptime=1.23
#   nb-e2e: ready block_size_bytes=134217728 uptime=1.50
#   nb-e2e: meminfo node0=123456 node1=234567 uptime=1.70        (kB, the kernel's MemTotal)
#   nb-e2e: blocks node0=0+,1+,32- node1=2+,3+ uptime=1.70       (+ online, - offline)
#   nb-e2e: agent-started uptime=2.00 / nb-e2e: agent-exited rc=1 uptime=9.00
#   nb-guest: {"level": "info", "event": "...", ...}                (the agent's JSON lines)
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() {
    read -r up _ < /proc/uptime
    echo "nb-e2e: $* uptime=$up"
}

say init
# A module's parameters on the kernel command line (virtio_mem.unplug_online=0), passed to
# insmod as modprobe would: the kernel applies them itself only to built-in modules.
read -r cmdline < /proc/cmdline
params() {
    for word in $cmdline; do
        case "$word" in "$1".*) echo "${word#"$1".}" ;; esac
    done
}
while read -r module; do
    # shellcheck disable=SC2046 # one word per parameter
    insmod "/lib/modules/$module" $(params "${module%.ko}") || say "insmod-failed module=$module"
done < /etc/nb-e2e/modules
say "virtio_mem unplug_online=$(cat /sys/module/virtio_mem/parameters/unplug_online)"
read -r block < /sys/devices/system/memory/block_size_bytes
say "ready block_size_bytes=$((0x$block))"

# QEMU's user-mode network: the guest is 10.0.2.15; 10.0.2.100 is the one address forwarded to
# the host (the service); restrict=on drops everything else.
ip link set lo up
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 || say "network-failed"

cfg=/sys/firmware/qemu_fw_cfg/by_name/opt/org.numa-balloon
agent() {
    url=$(cat "$cfg/url/raw") && token=$(cat "$cfg/guest-token/raw") || {
        say "agent-not-configured"
        return
    }
    say agent-started
    NUMA_BALLOON_URL="$url" NUMA_BALLOON_GUEST_TOKEN="$token" /usr/bin/python3.11 \
        -m numa_balloon_guest --interval 1 --log-format json 2>&1 |
        while read -r line; do echo "nb-guest: $line"; done
    say "agent-exited"
}
agent &

last=""
ticks=0
while :; do
    cur=""
    for f in /sys/devices/system/node/node*/meminfo; do
        read -r _ node _ kb _ < "$f"    # "Node 0 MemTotal:   123456 kB"
        cur="$cur node$node=$kb"
    done
    blocks=""
    for n in /sys/devices/system/node/node*; do
        list=""
        for m in "$n"/memory*; do
            [ -e "$m/state" ] || continue
            read -r state < "$m/state"
            case "$state" in online) s=+ ;; offline) s=- ;; *) s='~' ;; esac
            list="$list,${m##*/memory}$s"
        done
        blocks="$blocks ${n##*/}=${list#,}"
    done
    if [ "$cur" != "$last" ] || [ "$blocks" != "$lastb" ] || [ "$ticks" -ge 25 ]; then
        say "meminfo$cur"
        say "blocks$blocks"
        last="$cur"
        lastb="$blocks"
        ticks=0
    fi
    ticks=$((ticks + 1))
    sleep 0.2
done
