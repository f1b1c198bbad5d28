#!/bin/bash
# Download (never install) what the e2e run boots: Debian 12's Xen 4.17 hypervisor, a Debian
# kernel for dom0 and Debian's qemu-system-xen (the device model libxl starts for `xl create`).
# Everything lands in $WORK (outside the repository); nothing here touches the host's boot set-up.
# Xen's userspace (xl, xenstored, libxenctrl, hvmloader) comes from the host's xen-utils-4.17 and
# libxen-dev, the same packages the build links against.
set -euo pipefail
WORK=${WORK:-/var/tmp/xenguest-e2e}
mkdir -p "$WORK/debs" "$WORK/root"
cd "$WORK/debs"
chmod 777 .   # apt-get download runs as _apt when it can

kpkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
KPKG=$(kpkg)
if [ -z "$KPKG" ]; then apt-get update -qq; KPKG=$(kpkg); fi
[ -n "$KPKG" ] || { echo "e2e/fetch: no linux-image-*-amd64 package known (apt-get update?)" >&2; exit 1; }
PKGS="xen-hypervisor-4.17-amd64 $KPKG qemu-system-xen"

stamp="$WORK/root/.fetched"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$PKGS" ]; then
    echo "e2e/fetch: $PKGS already unpacked in $WORK/root"
    exit 0
fi
rm -f ./*.deb
apt-get download $PKGS || { apt-get update -qq && apt-get download $PKGS; }
rm -rf "$WORK/root"; mkdir -p "$WORK/root"
for d in ./*.deb; do dpkg -x "$d" "$WORK/root"; done

# QEMU's multiboot loader wants the uncompressed ELF image of Xen.
zcat "$WORK"/root/boot/xen-4.17-amd64.gz > "$WORK/xen.elf"
# dom0 kernel: the uncompressed vmlinux saves Xen ~5 s of XZ decompression under TCG.
VMLINUZ=$(ls "$WORK"/root/boot/vmlinuz-*)
off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$VMLINUZ" | head -1 | cut -d: -f1 || true)
# (tail may die of SIGPIPE once xz has its one stream: judge by the result, an ELF file)
[ -n "$off" ] && { tail -c +$((off + 1)) "$VMLINUZ" | xz --single-stream -dc > "$WORK/vmlinux" 2>/dev/null || true; }
if [ -n "$off" ] && [ "$(head -c 4 "$WORK/vmlinux" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
    echo "e2e/fetch: dom0 kernel = uncompressed vmlinux"
else
    echo "e2e/fetch: could not extract vmlinux; dom0 boots the bzImage"
    cp "$VMLINUZ" "$WORK/vmlinux"
fi
echo "$PKGS" > "$stamp"
ls -la "$WORK/xen.elf" "$WORK/vmlinux"
