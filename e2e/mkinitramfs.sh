#!/bin/bash
# Build the e2e dom0 initramfs ($WORK/dom0.cpio): busybox, Xen 4.17's userspace from the host
# (xen-utils-4.17, xenstore-utils, the libxen* libraries: the packages `make deps` installs), the
# Xen kernel modules of the downloaded dom0 kernel, Debian's hvmloader, SeaBIOS and qemu-system-xen
# (for `xl create`), the iPXE ROM, and ours: xenguest, xenguest-ocaml (the OCaml module behind
# the same argv), the xg-e2e toolstack, the popcount shim,
# the marker firmware, the PVH and PV test kernels (e2e/guests, assembled here) and Debian's
# kernel with a busybox initramfs for the Linux guests (for the HVM one, with xsread).
# Usage: mkinitramfs.sh XENGUEST XG_E2E LIBPOPCOUNT XENGUEST_OCAML     (after fetch.sh)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${WORK:-/var/tmp/xenguest-e2e}
XENGUEST=$1 XG_E2E=$2 POPCOUNT=$3 XENGUEST_OCAML=$4
R=$WORK/root
KVER=$(ls "$R/lib/modules" | head -1)
D=$WORK/dom0-rootfs
rm -rf "$D"
mkdir -p "$D"/{bin,sbin,usr/bin,usr/sbin,usr/lib,proc,sys,dev,run,tmp,var/lib/xen,var/log/xen,etc/xen,lib/modules,guest}
mkdir -p "$D/usr/lib/xen-4.17/bin" "$D/usr/lib/xen-4.17/boot" "$D/usr/lib/x86_64-linux-gnu" \
    "$D/lib/x86_64-linux-gnu" "$D/lib64" "$D/usr/libexec" "$D/usr/share/qemu" "$D/usr/share/seabios"
ln -s ../run "$D/var/run"

BB=$(command -v busybox)
cp "$BB" "$D/bin/busybox"
for a in $("$BB" --list); do [ -e "$D/bin/$a" ] || ln -s busybox "$D/bin/$a"; done

XBIN=/usr/lib/xen-4.17/bin
for b in xl xenstored xenconsoled xen-init-dom0 libxl-save-helper; do cp -a "$XBIN/$b" "$D$XBIN/"; done
cp /usr/bin/xenstore "$D/usr/bin/xenstore"
for c in read write ls list rm exists chmod; do ln -sf xenstore "$D/usr/bin/xenstore-$c"; done
cp /usr/lib/xen-4.17/boot/hvmloader "$D/usr/lib/xen-4.17/boot/"
cp /usr/share/seabios/bios-256k.bin "$D/usr/share/seabios/"
cp "$R/usr/libexec/xen-qemu-system-i386" "$D/usr/libexec/"
cp -r /usr/share/qemu/keymaps "$D/usr/share/qemu/"   # qemu-xen aborts without keymaps/en-us
# QEMU's option ROMs for a direct kernel boot (-kernel): SeaBIOS runs one to load the kernel.
cp /usr/share/qemu/linuxboot.bin /usr/share/qemu/linuxboot_dma.bin "$D/usr/share/qemu/"

install -m755 "$XENGUEST" "$D/usr/bin/xenguest"
install -m755 "$XG_E2E" "$D/usr/bin/xg-e2e"
install -m755 "$XENGUEST_OCAML" "$D/usr/bin/xenguest-ocaml"
install -m755 "$POPCOUNT" "$D/usr/lib/libpopcount.so"
"$XG_E2E" firmware "$D/guest/marker.fd"
gcc -m32 -c -o "$WORK/pvh.o" "$HERE/guests/pvh.S"
ld -m elf_i386 -T "$HERE/guests/pvh.lds" -nostdlib --build-id=none --no-warn-rwx-segments \
    -o "$D/guest/pvh.elf" "$WORK/pvh.o"
# The migration guest: a loop that checks its own memory, as a PVH kernel and as the firmware
# hvmloader hands over to in an HVM guest.
gcc -m32 -c -o "$WORK/memloop.o" "$HERE/guests/memloop.S"
ld -m elf_i386 -T "$HERE/guests/pvh.lds" -nostdlib --build-id=none --no-warn-rwx-segments \
    -o "$D/guest/memloop.elf" "$WORK/memloop.o"
gcc -m32 -DHVM_FW -c -o "$WORK/memloop-fw.o" "$HERE/guests/memloop.S"
ld -m elf_i386 -T "$HERE/guests/memloop-fw.lds" -nostdlib --build-id=none --no-warn-rwx-segments \
    -o "$WORK/memloop-fw.elf" "$WORK/memloop-fw.o"
objcopy -O binary "$WORK/memloop-fw.elf" "$D/guest/memloop.fd"
gcc -c -o "$WORK/pv.o" "$HERE/guests/pv.S"
ld -T "$HERE/guests/pv.lds" -nostdlib --build-id=none --no-warn-rwx-segments \
    -o "$D/guest/pv.elf" "$WORK/pv.o"
# The Linux guests: Debian's kernel (PV: the bzImage; PVH: the same, or the ELF vmlinux) and a
# busybox initramfs whose /init prints the marker.
cp "$(ls "$WORK"/root/boot/vmlinuz-* | head -1)" "$D/guest/vmlinuz"
G=$WORK/guest-rootfs
rm -rf "$G"; mkdir -p "$G"/{bin,dev,proc,sys}
cp "$BB" "$G/bin/busybox"
install -m755 "$HERE/guests/linux-init.sh" "$G/init"
(cd "$G/dev" && mknod -m 600 console c 5 1 && mknod -m 666 null c 1 3)
(cd "$G" && find . | cpio -o -H newc --quiet) > "$D/guest/initrd.cpio"
# The HVM Linux guest's initramfs: the same, plus xsread (reads xenstore through xenbus),
# gzipped, because SeaBIOS pulls it through QEMU's fw_cfg, which is slow under TCG.
gcc -static -Os -Wall -Wextra -o "$G/bin/xsread" "$HERE/guests/xsread.c"
strip "$G/bin/xsread"
(cd "$G" && find . | cpio -o -H newc --quiet) | gzip -9 > "$D/guest/initrd-hvm.cpio.gz"
IPXE=${XENGUEST_IPXE:-/usr/lib/ipxe/qemu/pxe-rtl8139.rom}
cp "$IPXE" "$D/guest/ipxe.rom"

# Shared libraries of everything above, resolved on the host (same Debian release as dom0's).
{
    for f in "$D$XBIN"/* "$D/usr/bin/xenstore" "$D/usr/bin/xenguest" "$D/usr/bin/xg-e2e" \
             "$D/usr/bin/xenguest-ocaml" \
             "$D/usr/lib/libpopcount.so" "$D/usr/libexec/xen-qemu-system-i386"; do
        LD_LIBRARY_PATH=$R/usr/lib/x86_64-linux-gnu ldd "$f" 2>/dev/null |
            awk '/=> \//{print $3} /^\t\/lib64/{print $1}'
    done
    echo /lib/x86_64-linux-gnu/libgcc_s.so.1   # glibc dlopen()s it for pthread_cancel (xl)
} | sort -u | while read -r lib; do
    case "$lib" in
        /lib64/*) cp -L "$lib" "$D/lib64/" ;;
        *) cp -nL "$lib" "$D/lib/x86_64-linux-gnu/" ;;
    esac
done
missing=$(LD_LIBRARY_PATH=$D/lib/x86_64-linux-gnu ldd "$D/usr/bin/xenguest" | grep 'not found' || true)
[ -z "$missing" ] || { echo "e2e/mkinitramfs: xenguest misses libraries: $missing" >&2; exit 1; }

for m in drivers/xen/xen-evtchn drivers/xen/xen-privcmd drivers/xen/xen-gntdev \
         drivers/xen/xen-gntalloc drivers/xen/xenfs/xenfs; do
    cp "$R/lib/modules/$KVER/kernel/$m.ko" "$D/lib/modules/"
done
echo '# empty' > "$D/etc/xen/xl.conf"
install -m755 "$HERE/dom0-init.sh" "$D/init"
(cd "$D/dev" && mknod -m 600 console c 5 1 && mknod -m 666 null c 1 3)
(cd "$D" && find . | cpio -o -H newc --quiet) > "$WORK/dom0.cpio"
echo "e2e/mkinitramfs: $WORK/dom0.cpio $(du -h "$WORK/dom0.cpio" | cut -f1)"
