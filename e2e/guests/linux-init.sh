#!/bin/busybox sh
# /init of the e2e Linux guests (Debian's kernel booted as a PV or a PVH domU built by our
# xenguest; this initramfs is its ramdisk or first module). Reaching it means the kernel booted
# on what the builder laid out; it prints the marker with the guest type Xen reports
# (XENGUEST-E2E-LINUX-PV-OK or XENGUEST-E2E-LINUX-PVH-OK) and facts a wrong build would
# change, on hvc0 (the console ring, logged by xenconsoled), then powers off.
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
type=$($bb cat /sys/hypervisor/guest_type 2>/dev/null || echo unknown)
mem=$($bb awk '/^MemTotal/{print $2 $3}' /proc/meminfo)
echo "XENGUEST-E2E-LINUX-$type-OK kernel=$($bb uname -r) cpus=$($bb nproc) mem=$mem"
$bb poweroff -f
