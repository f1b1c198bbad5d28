#!/bin/busybox sh
# /init of the e2e Linux guests: Debian's kernel booted as a PV or a PVH domU built by our
# xenguest (this initramfs is its ramdisk or first module), or as an HVM guest with
# qemu-system-xen as its device model (loaded by SeaBIOS from QEMU's -initrd). Reaching it
# means the kernel booted on what the builder laid out. It prints the marker
# (XENGUEST-E2E-LINUX-<PV|PVH|HVM>-OK) with the guest type Xen reports and facts a wrong build
# would change, on /dev/console (hvc0: the console ring, logged by xenconsoled), then powers off.
#
# An HVM guest also reports what the toolstack and the build promised it, for the toolstack to
# compare (e2e/dom0-init.sh): its domid and the key `data/e2e-token`, read through xenbus (the
# store ring and event channel the build set up) after the xen-platform-pci device bound; the
# vCPUs online and possible (platform/vcpu/current and /number); the RAM in its e820
# (/sys/firmware/memmap); and, once the balloon driver has gone down to the toolstack's
# memory/target (populate-on-demand guests), what it holds. The marker also goes to ttyS0.
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev 2>/dev/null
type=$($bb cat /sys/hypervisor/guest_type 2>/dev/null || echo unknown)
mem=$($bb awk '/^MemTotal/{print $2 $3}' /proc/meminfo)
facts="kernel=$($bb uname -r) cpus=$($bb nproc) mem=$mem"

if [ "$type" = HVM ]; then
    # Every "System RAM" range of the firmware's e820, summed, in KiB.
    ram_kib=0
    for d in /sys/firmware/memmap/*; do
        [ "$($bb cat "$d/type")" = "System RAM" ] || continue
        s=$($bb cat "$d/start") e=$($bb cat "$d/end")
        ram_kib=$((ram_kib + ((e - s + 1) >> 10)))
    done
    pci=unbound
    for dev in /sys/bus/pci/drivers/xen-platform-pci/0000:*; do [ -e "$dev" ] && pci=bound; done
    domid=$(/bin/xsread domid 2>&1 | $bb tr ' ' _)
    token=$(/bin/xsread data/e2e-token 2>&1 | $bb tr ' ' _)
    # The balloon driver works in the background: wait (at most 60 s) until it holds no more
    # than its target.
    b=/sys/devices/system/xen_memory/xen_memory0
    i=0
    while [ $i -lt 120 ]; do
        cur=$($bb cat $b/info/current_kb 2>/dev/null || echo 0)
        tgt=$($bb cat $b/target_kb 2>/dev/null || echo 0)
        [ "$cur" -le "$tgt" ] && break
        $bb sleep 0.5; i=$((i + 1))
    done
    facts="$facts domid=$domid token=$token platform_pci=$pci"
    facts="$facts cpus_online=$($bb cat /sys/devices/system/cpu/online)"
    facts="$facts cpus_possible=$($bb cat /sys/devices/system/cpu/possible)"
    facts="$facts e820_ram_kib=$ram_kib balloon_kib=$cur balloon_target_kib=$tgt"
    facts="$facts mem_after=$($bb awk '/^MemTotal/{print $2 $3}' /proc/meminfo)"
    echo "XENGUEST-E2E-LINUX-$type-OK $facts" > /dev/ttyS0
fi
echo "XENGUEST-E2E-LINUX-$type-OK $facts"
$bb poweroff -f
