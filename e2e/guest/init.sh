#!/bin/busybox sh
# /init of the e2e guest (e2e/image.py packs it with busybox and the virtio modules).
# It loads virtio_mem, brings hot-plugged memory online as movable (so it can be unplugged
# again), then prints each NUMA node's MemTotal on the serial console whenever it changes
# (polled every 0.2 s, without forking) and every 5 s anyway. e2e/console.py parses the lines:
#   nb-e2e: init uptime=1.23
#   nb-e2e: ready block_size_bytes=134217728 uptime=1.50
#   nb-e2e: meminfo node0=123456 node1=234567 uptime=1.70        (kB, the kernel's MemTotal)
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() {
    read -r up _ < /proc/uptime
    echo "nb-e2e: $* uptime=$up"
}

say init
echo online_movable > /sys/devices/system/memory/auto_online_blocks
while read -r module; do
    insmod "/lib/modules/$module" || say "insmod-failed module=$module"
done < /etc/nb-e2e/modules
read -r block < /sys/devices/system/memory/block_size_bytes
say "ready block_size_bytes=$((0x$block))"

last=""
ticks=0
while :; do
    cur=""
    for f in /sys/devices/system/node/node*/meminfo; do
        read -r _ node _ kb _ < "$f"    # "Node 0 MemTotal:   123456 kB"
        cur="$cur node$node=$kb"
    done
    if [ "$cur" != "$last" ] || [ "$ticks" -ge 25 ]; then
        say "meminfo$cur"
        last="$cur"
        ticks=0
    fi
    ticks=$((ticks + 1))
    sleep 0.2
done
