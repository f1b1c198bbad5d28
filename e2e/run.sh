#!/bin/bash
# `make e2e`: boot Debian 12's Xen 4.17 under qemu-system-x86_64 (TCG, 2 vCPUs), with a dom0 that
# builds guests with our xenguest and boots them: HVM (hvmloader + a marker firmware), a tiny PVH
# and a tiny PV kernel (e2e/guests), Debian's kernel as PV and as PVH (a busybox initramfs
# prints the marker), and HVM, PVH and PV again built in-process by the OCaml module
# (xenguest-ocaml); then migrates a self-checking PVH and HVM guest live and non-live through two
# `xenguest -mode listen` driven as emu-manager drives them (xg-e2e migrate); then times our
# HVM builds against `xl create -p` and counts populate calls on both sides; last, boots
# Debian's kernel as an HVM guest with Debian's QEMU as its device model, built by our binary,
# by the OCaml module and by `xl create`.
#
# Exit status: 0 all passed; 1 a check failed (guest did not boot, build failed, ...);
# 2 QEMU could not run at all (said loudly: CI goes on with the rest).
# Knobs: WORK (downloads and images, default /var/tmp/xenguest-e2e, never in the repository),
# E2E_TIMEOUT (s, whole QEMU run, default 1800), E2E_SIZES (MiB, default 128,2048),
# E2E_REPS (default 5), E2E_NO_BENCHMARKS=1 (do not rewrite BENCHMARKS.md), E2E_ONLY=some of
# boot,linux,migrate,bench,storm (comma separated, in dom0's order; default all; linux: the HVM
# Linux guests with QEMU as their device model, ours and xl's), E2E_LINUX=some of ours,ocaml,xl
# (which of those; default all), E2E_LINUX_FIRST=1 (run them before the migrations).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export WORK=${WORK:-/var/tmp/xenguest-e2e}
TIMEOUT=${E2E_TIMEOUT:-1800}
SIZES=${E2E_SIZES:-128,2048}
REPS=${E2E_REPS:-5}
CARGO=${CARGO:-cargo}
T0=$SECONDS
mkdir -p "$WORK"
LOG=$WORK/serial.log

loud() {
    echo "################################################################################" >&2
    echo "### e2e: $*" >&2
    echo "################################################################################" >&2
}

if ! command -v qemu-system-x86_64 >/dev/null; then
    loud "QEMU CANNOT START: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
    exit 2
fi
# Can QEMU start at all here? (an empty machine, stopped at once)
qemu-system-x86_64 -accel tcg -machine none -display none -S -monitor none -serial none \
    -parallel none </dev/null >/dev/null 2>"$WORK/qemu-probe.err" &
probe=$!; sleep 1; kill "$probe" 2>/dev/null; wait "$probe" 2>/dev/null
if grep -v "terminating on signal" "$WORK/qemu-probe.err" | grep -q .; then
    loud "QEMU CANNOT START: $(head -3 "$WORK/qemu-probe.err")"
    exit 2
fi

echo "e2e: [$((SECONDS - T0))s] fetching Debian packages into $WORK"
e2e/fetch.sh || { echo "e2e: fetch failed" >&2; exit 1; }

echo "e2e: [$((SECONDS - T0))s] building xenguest, xg-e2e and the popcount shim (release)"
$CARGO build --release --locked -p xenguest -p xenguest-e2e -p xenguest-e2e-popcount || exit 1
TGT=${CARGO_TARGET_DIR:-$ROOT/target}/release

echo "e2e: [$((SECONDS - T0))s] building xenguest-ocaml (the OCaml module behind xenguest's argv)"
dune build --root . ./ocaml/e2e/xenguest_ocaml.exe 2>&1 || exit 1

echo "e2e: [$((SECONDS - T0))s] building the dom0 initramfs"
e2e/mkinitramfs.sh "$TGT/xenguest" "$TGT/xg-e2e" "$TGT/libpopcount.so" \
    _build/default/ocaml/e2e/xenguest_ocaml.exe || exit 1

XEN_CMDLINE="console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all console_timestamps=boot"
XEN_CMDLINE+=" dom0_mem=1024M,max:1024M dom0_max_vcpus=1 bootscrub=0"
DOM0_CMDLINE="console=hvc0 earlyprintk=xen e2e_sizes=$SIZES e2e_reps=$REPS e2e_boot_timeout=240 e2e_only=${E2E_ONLY:-all} e2e_linux=${E2E_LINUX:-ours,ocaml,xl} e2e_linux_first=${E2E_LINUX_FIRST:-0}"
# -cpu max,-smap,-rdtscp: two QEMU 7.2 TCG bugs (a PV dom0 dies on SMAP, HVM guests on RDTSCP
# exits); TCG emulates SVM with NPT, so Xen has HAP. Multiboot modules are comma separated:
# a literal ',' in the dom0 command line is written ',,'.
QEMU=(qemu-system-x86_64 -accel tcg -cpu max,-smap,-rdtscp -smp 2 -m 4096
      -display none -vga none -no-reboot -monitor none -serial stdio
      -device isa-debug-exit,iobase=0xf4,iosize=0x04
      -kernel "$WORK/xen.elf" -append "$XEN_CMDLINE"
      -initrd "$WORK/vmlinux ${DOM0_CMDLINE//,/,,},$WORK/dom0.cpio")

echo "e2e: [$((SECONDS - T0))s] booting Xen under QEMU (TCG; limit ${TIMEOUT}s); serial log: $LOG"
echo "# ${QEMU[*]}" > "$LOG"
t0=${EPOCHREALTIME/./}; Q0=$SECONDS
timeout "$TIMEOUT" "${QEMU[@]}" </dev/null 2>&1 |
while IFS= read -r line; do
    line=${line%$'\r'}
    now=${EPOCHREALTIME/./}; ms=$(( (now - t0) / 1000 ))
    printf '[%4d.%03d] %s\n' $((ms / 1000)) $((ms % 1000)) "$line"
done | tee -a "$LOG" | grep --line-buffered -E '@@|\(d[1-9][0-9]*\)|E2E |xg-e2e:|Panic|FATAL' 
qrc=${PIPESTATUS[0]}
QEMU_S=$((SECONDS - Q0))

if ! grep -q 'Xen version' "$LOG"; then
    loud "QEMU CANNOT START Xen (qemu exit $qrc): $(grep -v '^#' "$LOG" | head -3)"
    exit 2
fi

verdict=0
case $qrc in
    1) echo "e2e: dom0 reported every check passed" ;;
    3) echo "e2e: dom0 reported a failure"; verdict=1 ;;
    124) echo "e2e: TIMEOUT after ${TIMEOUT}s"; verdict=1 ;;
    *) echo "e2e: QEMU exited with $qrc without a verdict"; verdict=1 ;;
esac
grep -a '@@FAIL' "$LOG" && verdict=1
# has PART: whether this run did PART (E2E_ONLY: some of boot,linux,migrate,bench,storm).
has() { [ "${E2E_ONLY:-all}" = all ] || case ",$E2E_ONLY," in *",$1,"*) true ;; *) false ;; esac; }
BOOTS= MIGRATIONS= STREAMCMPS=
has boot && BOOTS="hvm pvh pv linux-pv linux-pvh ocaml-hvm ocaml-pvh ocaml-pv"
if has linux; then
    for c in $(echo "${E2E_LINUX:-ours,ocaml,xl}" | tr ',' ' '); do
        case $c in ours) BOOTS="$BOOTS linux-hvm" ;; *) BOOTS="$BOOTS $c-linux-hvm" ;; esac
    done
fi
has migrate && MIGRATIONS="pvh-live pvh-nonlive hvm-live hvm-nonlive hvm-live-libxenguest hvm-live-lib-to-native hvm-live-native-to-lib pvh-live-lib-to-native pvh-live-native-to-lib" STREAMCMPS="pvh hvm"
if has storm; then
    if grep -aq '@@STORM burst' "$LOG"; then echo "e2e: in-process against fork/exec:"; grep -a '@@STORM' "$LOG"
    else echo "e2e: the in-process storm did NOT run"; verdict=1; fi
fi
# passed MARKER WHAT: the serial log has "@@MARKER PASS" (printed with WHAT), else the run fails.
passed() {
    if grep -aq "@@$1 PASS" "$LOG"; then
        echo "e2e: $2:"; grep -a -m1 "@@$1 PASS" "$LOG"
    else
        echo "e2e: NOT PASSED: $2"; grep -a -m1 "@@$1 " "$LOG" || true; verdict=1
    fi
}
for m in $MIGRATIONS; do passed "MIGRATE $m" "the $m migration kept the guest's memory"; done
for k in $STREAMCMPS; do passed "STREAMCMP $k" "the $k streams of both engines match"; done
if [ -n "$STREAMCMPS" ]; then passed "XLRESTORE pvh" "xl restore resumed our PVH save"; fi
for guest in $BOOTS; do
    if grep -aq "@@BOOT $guest PASS" "$LOG"; then
        echo "e2e: the $guest guest booted and printed its marker:"
        grep -a -m1 "@@SEEN $guest " "$LOG"
    else
        echo "e2e: the $guest guest did NOT print its marker"; verdict=1
    fi
done

if [ "${E2E_NO_BENCHMARKS:-0}" != 1 ] && grep -aq '@@BENCH ours' "$LOG" && grep -aq '@@BENCH xl' "$LOG"; then
    "$TGT/xg-e2e" report "$LOG" "$QEMU_S" | scripts/bench-section real-xen BENCHMARKS.md \
        && echo "e2e: BENCHMARKS.md (section real-xen) updated"
fi
if [ "${E2E_NO_BENCHMARKS:-0}" != 1 ] && grep -aq '@@MIGRATE ' "$LOG"; then
    "$TGT/xg-e2e" migration-report "$LOG" "$QEMU_S" |
        scripts/bench-section real-xen-migration BENCHMARKS.md \
        && echo "e2e: BENCHMARKS.md (section real-xen-migration) updated"
fi
if [ "${E2E_NO_BENCHMARKS:-0}" != 1 ] && grep -aq '@@STORM burst' "$LOG"; then
    "$TGT/xg-e2e" storm-report "$LOG" "$QEMU_S" | scripts/bench-section real-xen-inprocess BENCHMARKS.md \
        && echo "e2e: BENCHMARKS.md (section real-xen-inprocess) updated"
fi
echo "e2e: done in $((SECONDS - T0))s (QEMU part ${QEMU_S}s): $([ $verdict = 0 ] && echo PASS || echo FAIL)"
exit $verdict
