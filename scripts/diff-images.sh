#!/bin/bash
# Make the real images tests/libxenguest_diff.rs parses with both our code and libxenguest, in
# $IMAGES (default /var/tmp/xenguest-images, outside the repository). Idempotent: what is
# already there and current is kept. Run by `make test-diff`.
#
#   pvgrub-x86_64.elf   grub-mkimage -O x86_64-xen     (grub-xen-bin): a 64-bit PV kernel
#   grub-pvh.elf        grub-mkimage -O i386-xen_pvh   (grub-xen-bin): a PVH kernel
#   vmlinuz             boot/vmlinuz-* of Debian's current linux-image-<version>-amd64: a bzImage
#   vmlinux             the ELF image inside that vmlinuz, unpacked with xz/gzip/zstd
#
# hvmloader and xen-shim are used where xen-utils-4.17 installs them (/usr/lib/xen-4.17/boot).
# The kernel package is downloaded with `apt-get download` (never installed); a copy already
# fetched by the e2e run (/var/tmp/xenguest-e2e/debs) is reused.
set -euo pipefail
IMAGES=${IMAGES:-/var/tmp/xenguest-images}
E2E_DEBS=${E2E_DEBS:-/var/tmp/xenguest-e2e/debs}
GRUB_PREFIX='(xen/xvda,msdos1)/boot/grub'
mkdir -p "$IMAGES/debs"
cd "$IMAGES"

say() { echo "diff-images: $*"; }
die() { echo "diff-images: $*" >&2; exit 1; }

# grub's Xen images: a few milliseconds each, so made afresh (same grub, same bytes).
command -v grub-mkimage >/dev/null || die "grub-mkimage missing: apt-get install grub-xen-bin (make deps)"
for target in x86_64-xen:pvgrub-x86_64.elf i386-xen_pvh:grub-pvh.elf; do
    format=${target%%:*} out=${target#*:}
    [ -d "/usr/lib/grub/$format" ] || die "/usr/lib/grub/$format missing: apt-get install grub-xen-bin (make deps)"
    grub-mkimage -O "$format" -o "$out.tmp" -p "$GRUB_PREFIX" normal
    mv "$out.tmp" "$out"
done
say "grub images: $(cd "$IMAGES" && ls pvgrub-x86_64.elf grub-pvh.elf | tr '\n' ' ')"

# The kernel: the package linux-image-amd64 depends on today.
kpkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
KPKG=$(kpkg)
if [ -z "$KPKG" ]; then apt-get update -qq; KPKG=$(kpkg); fi
[ -n "$KPKG" ] || die "no linux-image-*-amd64 package known to apt (check /etc/apt/sources.list)"

stamp="$IMAGES/.kernel"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$KPKG" ] && [ -s vmlinuz ] && [ -s vmlinux ]; then
    say "kernel: $KPKG already unpacked"
    exit 0
fi
rm -f "$stamp" vmlinuz vmlinux
deb=$(ls debs/"${KPKG}"_*.deb 2>/dev/null | head -n 1 || true)
if [ -z "$deb" ] && ls "$E2E_DEBS/${KPKG}"_*.deb >/dev/null 2>&1; then
    cp "$(ls "$E2E_DEBS/${KPKG}"_*.deb | head -n 1)" debs/
    say "kernel: reusing the e2e run's copy of $KPKG"
elif [ -z "$deb" ]; then
    rm -f debs/*.deb
    chmod 777 debs   # apt-get download runs as _apt when it can
    (cd debs && { apt-get download "$KPKG" || { apt-get update -qq && apt-get download "$KPKG"; }; })
fi
deb=$(ls debs/"${KPKG}"_*.deb | head -n 1)

# Only boot/vmlinuz-* out of the package (the modules are most of it).
dpkg-deb --fsys-tarfile "$deb" | tar -xO --wildcards './boot/vmlinuz-*' > vmlinuz.tmp
[ -s vmlinuz.tmp ] || die "$deb holds no boot/vmlinuz-*"
mv vmlinuz.tmp vmlinuz

# The ELF image inside: the payload the boot protocol header (2.08+) describes, at
# (setup_sects + 1) * 512 + payload_offset, payload_length bytes long.
u8()  { od -An -tu1 -j "$1" -N1 vmlinuz | tr -d ' '; }
u32() { od -An -tu4 -j "$1" -N4 vmlinuz | tr -d ' '; }
[ "$(od -An -c -j 514 -N4 vmlinuz | tr -d ' ')" = HdrS ] || die "vmlinuz is not a bzImage"
offset=$(( ($(u8 $((0x1f1))) + 1) * 512 + $(u32 $((0x248))) ))
length=$(u32 $((0x24c)))
payload() { tail -c +$((offset + 1)) vmlinuz | head -c "$length"; }
case "$(payload | od -An -tx1 -N4 | tr -d ' ')" in
    fd377a58) unpack=(xz --single-stream -dc) ;;   # the size appended after the stream is ignored
    1f8b*)    unpack=(gzip -dc) ;;
    28b52ffd) unpack=(zstd -dc) ;;
    *) die "vmlinuz: payload in a format this script does not unpack" ;;
esac
# gzip warns (status 2) about the appended size: judge by the result, an ELF image.
payload | "${unpack[@]}" > vmlinux.tmp 2>/dev/null || true
[ "$(head -c 4 vmlinux.tmp | od -An -tx1 | tr -d ' ')" = 7f454c46 ] || die "could not unpack vmlinux from vmlinuz"
mv vmlinux.tmp vmlinux
echo "$KPKG" > "$stamp"
say "kernel: $KPKG: vmlinuz $(stat -c %s vmlinuz) bytes, vmlinux $(stat -c %s vmlinux) bytes"
