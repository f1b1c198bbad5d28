#!/bin/sh
# /init of the e2e dom0 (busybox + Xen 4.17 userspace + our xenguest and test toolstack).
# Runs the HVM, PVH and PV boot tests, the migrations, the build benchmark (our xenguest against
# `xl create -p`), the in-process storm and last the Linux HVM guests with a device model; prints
# machine-readable `@@` lines for e2e/run.sh, and leaves QEMU through isa-debug-exit (port 0xf4):
# QEMU exits 1 when every check passed, 3 otherwise.
# dom0 command line knobs: e2e_sizes=128,2048 (MiB), e2e_reps=3, e2e_boot_timeout=240 (s),
# e2e_only=boot,linux,migrate,bench,storm (some parts; default all), e2e_linux=ours,ocaml,xl
# (which Linux HVM guests; default all three), e2e_linux_first=1 (run them before the
# migrations, not last).
export PATH=/usr/lib/xen-4.17/bin:/bin:/sbin:/usr/bin:/usr/sbin
export LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /run /tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp

up() { cut -d' ' -f1 /proc/uptime; }
mark() { echo "@@MARK $* t=$(up)"; }
FAILS=0
fail() { echo "@@FAIL $*"; FAILS=$((FAILS+1)); }
finish() {
    echo "@@OVERALL $([ $FAILS = 0 ] && echo PASS || echo "FAIL ($FAILS)")"
    v=$([ $FAILS = 0 ] && echo 0 || echo 1)
    printf "\\00$v" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
    sleep 2
    poweroff -f
}
mark dom0-init

SIZES=128,2048; REPS=5; BOOT_TIMEOUT=240; ONLY=all; LINUX_CASES=ours,ocaml,xl; LINUX_FIRST=0
# want PART: whether this run does PART (boot, linux, migrate, bench, storm; e2e_only= picks
# some, comma separated).
want() { [ "$ONLY" = all ] || case ",$ONLY," in *",$1,"*) true ;; *) false ;; esac; }
for a in $(cat /proc/cmdline); do
    case "$a" in
        e2e_sizes=*) SIZES=${a#e2e_sizes=} ;;
        e2e_reps=*) REPS=${a#e2e_reps=} ;;
        e2e_boot_timeout=*) BOOT_TIMEOUT=${a#e2e_boot_timeout=} ;;
        e2e_only=*) ONLY=${a#e2e_only=} ;;
        e2e_linux=*) LINUX_CASES=${a#e2e_linux=} ;;
        e2e_linux_first=*) LINUX_FIRST=${a#e2e_linux_first=} ;;
    esac
done

for m in xen-evtchn xen-privcmd xen-gntdev xen-gntalloc xenfs; do
    insmod /lib/modules/$m.ko || fail "insmod $m"
done
mkdir -p /proc/xen && mount -t xenfs xenfs /proc/xen
echo "@@HYPERVISOR $(cat /sys/hypervisor/type) $(cat /sys/hypervisor/version/major).$(cat /sys/hypervisor/version/minor)$(cat /sys/hypervisor/version/extra)"

mkdir -p /run/xen /run/xenstored /var/lib/xen /var/lib/xenstored /var/log/xen/console /var/lock /var/log
syslogd -O /var/log/messages          # xenguest logs to syslog, as the C one does
export XENSTORED_ROOTDIR=/run/xenstored
xenstored --pid-file /run/xenstore.pid || fail "xenstored rc=$?"
i=0
until xenstore-read / >/dev/null 2>&1; do
    i=$((i+1)); [ $i -gt 60 ] && { fail "xenstored did not come up"; break; }
    sleep 0.5
done
xen-init-dom0 >/dev/null || fail "xen-init-dom0"
# Guest consoles are logged to /var/log/xen/console/guest-<name>.log (the Linux guests' markers).
xenconsoled --log=guest --pid-file=/run/xenconsoled.pid || fail "xenconsoled"
xl info | grep -E '^(xen_version|virt_caps|total_memory|free_memory|nr_cpus)'
mark dom0-ready

if want boot; then
# ------------------------------------------------------------------ 1. the HVM guest boots
# hvmloader (Debian's, as xenopsd passes it) with the marker firmware as its `firmware` module
# (hvmloader/bios = ovmf, the UEFI path): the guest prints the marker on Xen's debug console.
mark hvm-boot-begin
out=$(xg-e2e hvm --name hvm-boot --mem-mib 128 --xenguest /usr/bin/xenguest \
      --image /usr/lib/xen-4.17/boot/hvmloader --firmware /guest/marker.fd \
      --ipxe /guest/ipxe.rom --boot --timeout-s "$BOOT_TIMEOUT" 2>&1)
rc=$?
echo "$out"
mark hvm-boot-end
line=$(echo "$out" | grep '^E2E name=')
domid=$(echo "$line" | sed -n 's/.* domid=\([0-9]*\).*/\1/p')
echo "----- guest console (Xen debug port, xl dmesg) -----"
xl dmesg | grep "(d$domid)" | tail -40
echo "----- end guest console -----"
if [ $rc = 0 ] && xl dmesg | grep -q "(d$domid) .*XENGUEST-E2E-HVM-OK" \
   && echo "$line" | grep -q 'shutdown=poweroff'; then
    echo "@@BOOT hvm PASS $line"
    echo "@@SEEN hvm $(xl dmesg | grep "(d$domid) .*XENGUEST-E2E-HVM-OK" | head -1)"
else
    fail "hvm boot (rc=$rc): $line"
    echo "@@BOOT hvm FAIL $line"
fi
echo "----- xenguest's syslog -----"
grep xenguest /var/log/messages | sed 's/^.*xenguest/xenguest/' | tail -30
echo "----- end syslog -----"

# ------------------------------------------------------------------ 2. PVH and PV guests boot
# Tiny kernels (e2e/guests) that print their command line, the marker, only if the start info
# our builder wrote is right: the PVH one on the debug port (Xen's console), the PV one into
# its console ring (xg-e2e prints the ring after the shutdown). Then Debian's own kernel as a
# PV guest (bzImage + ramdisk) and as a PVH guest (initramfs as module 0), whose /init prints
# the marker with the guest type on hvc0 (xenconsoled's log of the guest).
boot_kernel() {  # MODE NAME MARKER WHERE(dmesg|ring|log) XG-E2E-ARGS...
    mode=$1 name=$2 marker=$3 where=$4
    shift 4
    mark $name-boot-begin
    out=$(xg-e2e $mode --name $name --xenguest /usr/bin/xenguest --boot \
          --timeout-s "$BOOT_TIMEOUT" "$@" 2>&1)
    rc=$?
    echo "$out"
    mark $name-boot-end
    line=$(echo "$out" | grep '^E2E name=')
    domid=$(echo "$line" | sed -n 's/.* domid=\([0-9]*\).*/\1/p')
    echo "----- $name guest console (Xen's log, then xenconsoled's) -----"
    xl dmesg | grep "(d$domid)" | tail -20
    tail -20 /var/log/xen/console/guest-$name.log 2>/dev/null
    echo "----- end $name guest console -----"
    case $where in
        dmesg) seen=$(xl dmesg | grep "(d$domid) .*$marker") ;;
        ring) seen=$(echo "$out" | grep "^E2E console $domid: $marker") ;;
        log) seen=$(grep -a "$marker" /var/log/xen/console/guest-$name.log 2>/dev/null) ;;
    esac
    if [ $rc = 0 ] && [ -n "$domid" ] && [ -n "$seen" ] && echo "$line" | grep -q 'shutdown=poweroff'; then
        echo "@@BOOT $name PASS $line"
        echo "@@SEEN $name $seen"
    else
        fail "$name boot (rc=$rc): $line"
        echo "@@BOOT $name FAIL $line"
        grep xenguest /var/log/messages | sed 's/^.*xenguest/xenguest/' | tail -20
    fi
}
boot_kernel pvh pvh XENGUEST-E2E-PVH-OK dmesg --mem-mib 128 --image /guest/pvh.elf \
    --cmdline "XENGUEST-E2E-PVH-OK domain built by the Rust xenguest"
boot_kernel pv pv XENGUEST-E2E-PV-OK ring --mem-mib 128 --image /guest/pv.elf \
    --cmdline "XENGUEST-E2E-PV-OK domain built by the Rust xenguest"
boot_kernel pv linux-pv XENGUEST-E2E-LINUX-PV-OK log --mem-mib 256 --image /guest/vmlinuz \
    --ramdisk /guest/initrd.cpio --cmdline "console=hvc0 quiet"
boot_kernel pvh linux-pvh XENGUEST-E2E-LINUX-PVH-OK log --mem-mib 256 --image /guest/vmlinuz \
    --module /guest/initrd.cpio --cmdline "console=hvc0 earlyprintk=xen quiet"

# ------------------------------------------------------------------ 3. the OCaml module on real Xen
# The same guests built in-process by Xenguest.{hvm,pvh,pv}_build on Xenguest.interface_open,
# as xenopsd will call them (xenguest-ocaml takes xenguest's argv).
OCAML="--xenguest /usr/bin/xenguest-ocaml"
boot_kernel hvm ocaml-hvm XENGUEST-E2E-HVM-OK dmesg $OCAML --mem-mib 128 \
    --image /usr/lib/xen-4.17/boot/hvmloader --firmware /guest/marker.fd --ipxe /guest/ipxe.rom
boot_kernel pvh ocaml-pvh XENGUEST-E2E-PVH-OK dmesg $OCAML --mem-mib 128 --image /guest/pvh.elf \
    --cmdline "XENGUEST-E2E-PVH-OK domain built by the OCaml module"
boot_kernel pv ocaml-pv XENGUEST-E2E-PV-OK ring $OCAML --mem-mib 128 --image /guest/pv.elf \
    --cmdline "XENGUEST-E2E-PV-OK domain built by the OCaml module"

fi

# ------------------------------------------------------------------ 3b. Linux HVM with a device model
# Debian's kernel as an HVM guest: built by our binary, by the OCaml module (both with xenopsd's
# argv) and by `xl create`, each with Debian's QEMU as its device model and a direct kernel boot
# through hvmloader's SeaBIOS. 512 MiB at most, 384 MiB at boot (populate-on-demand: the
# balloon driver goes down to memory/target), 2 vCPUs, 1 online. The guest's /init
# (e2e/guests/linux-init.sh) reads its domid and a token the toolstack wrote through xenbus,
# and prints its vCPUs, e820 RAM and balloon on ttyS0 and hvc0; `xg-e2e check-hvm-marker`
# compares them with what was asked. The time to that marker is measured from the unpause.
LMAX=512 LSTART=384 LVCPUS=2 LCUR=1
LAPPEND="console=ttyS0 console=hvc0 quiet"
LMARK=XENGUEST-E2E-LINUX-HVM-OK
# linux_check DOMID TOKEN SERIAL STATIC_MAX_KIB TARGET_KIB RUN_LINE: the marker ($seen) and its
# check against what was asked ($check), with the pages the domain held when it was unpaused.
linux_check() {
    seen=$(grep -a -m1 "$LMARK" "$3" 2>/dev/null | tr -d '\r')
    paused=$(echo "$6" | sed -n 's/.* paused_kib=\([0-9]*\).*/\1/p')
    check=$(xg-e2e check-hvm-marker --line "$seen" --domid "$1" --token "$2" --vcpus $LVCPUS \
            --vcpus-current $LCUR --mem-mib $LMAX --static-max-kib "$4" --target-kib "$5" \
            --paused-kib "$paused" 2>&1)
}
linux_hvm() {  # NAME XENGUEST
    name=$1 token=token-$1-$(cut -c1-8 /proc/sys/kernel/random/uuid)
    serial=/var/log/xen/console/$name.serial
    mark $name-boot-begin
    out=$(xg-e2e hvm --name $name --xenguest $2 --mem-mib $LMAX --start-mib $LSTART \
          --vcpus $LVCPUS --vcpus-current $LCUR --image /usr/lib/xen-4.17/boot/hvmloader \
          --bios seabios --ipxe /guest/ipxe.rom --dm /usr/libexec/xen-qemu-system-i386 \
          --kernel /guest/vmlinuz --initrd /guest/initrd-hvm.cpio.gz --append "$LAPPEND" \
          --serial $serial --token $token --marker $LMARK --boot --timeout-s $LINUX_TIMEOUT 2>&1)
    rc=$?
    mark $name-boot-end
    echo "$out" | grep -v '^E2E exec'
    line=$(echo "$out" | grep '^E2E name=')
    domid=$(echo "$line" | sed -n 's/.* domid=\([0-9]*\).*/\1/p')
    linux_check "$domid" $token $serial $((LMAX * 1024)) $((LSTART * 1024)) "$line"
    crc=$?
    hvc=$(grep -a -m1 "$LMARK" /var/log/xen/console/guest-$name.log 2>/dev/null)
    echo "----- $name serial (ttyS0), then hvc0 (xenconsoled) -----"
    tail -15 $serial 2>/dev/null; tail -3 /var/log/xen/console/guest-$name.log 2>/dev/null
    echo "----- end $name -----"
    if [ $rc = 0 ] && [ $crc = 0 ] && [ -n "$hvc" ] && echo "$line" | grep -q 'shutdown=poweroff'; then
        echo "@@BOOT $name PASS $line"
        echo "@@SEEN $name $seen"
    else
        fail "$name boot (rc=$rc): $line; marker on hvc0: ${hvc:-none}; $check"
        echo "@@BOOT $name FAIL $line"
        tail -20 /tmp/qemu-$name.log 2>/dev/null
        grep xenguest /var/log/messages | sed 's/^.*xenguest/xenguest/' | tail -20
    fi
}
xl_linux_hvm() {  # NAME: the same guest created by xl (libxl, the C libxenguest, the same QEMU)
    name=$1 token=token-$1-$(cut -c1-8 /proc/sys/kernel/random/uuid)
    serial=/var/log/xen/console/$name.serial
    {
        echo "name = \"$name\""; echo 'type = "hvm"'
        echo "memory = $LSTART"; echo "maxmem = $LMAX"; echo "vcpus = $LCUR"; echo "maxvcpus = $LVCPUS"
        echo 'kernel = "/guest/vmlinuz"'; echo 'ramdisk = "/guest/initrd-hvm.cpio.gz"'
        echo "cmdline = \"$LAPPEND\""; echo "serial = \"file:$serial\""
        echo 'vga = "none"'; echo 'vnc = 0'; echo 'sdl = 0'
    } > /etc/xen/$name.cfg
    mark $name-boot-begin
    t=$(timeout 300 xg-e2e timed /tmp/$name.log -- xl -vvv create -p -e /etc/xen/$name.cfg)
    d=$(xl domid $name 2>/dev/null) smax= tgt= seen= check=
    if [ -n "$d" ]; then
        xenstore-write /local/domain/$d/data/e2e-token $token
        smax=$(xenstore-read /local/domain/$d/memory/static-max)
        tgt=$(xenstore-read /local/domain/$d/memory/target)
        run=$(xg-e2e run --domid $d --timeout-s $LINUX_TIMEOUT --serial $serial --marker $LMARK 2>&1)
        linux_check $d $token $serial $smax $tgt "$run"
        crc=$?
    else
        run="xl create failed" crc=1; tail -30 /tmp/$name.log
    fi
    mark $name-boot-end
    tail -15 $serial 2>/dev/null
    # xl create -p: the domain, its build and its device model, ready to unpause.
    w=$(echo "$t" | sed -n 's/.*wall_ms=\([0-9]*\).*/\1/p')
    line="E2E name=$name domid=$d mem_mib=$LMAX start_mib=$LSTART build_ms=$w ready_ms=$w $(echo "$run" | sed -n 's/^E2E RUN domid=[0-9]* //p') static_max_kib=$smax target_kib=$tgt"
    if [ $crc = 0 ] && echo "$run" | grep -q 'shutdown=poweroff'; then
        echo "@@BOOT $name PASS $line"
        echo "@@SEEN $name $seen"
    else
        fail "$name boot: $line; $run; $check"
        echo "@@BOOT $name FAIL $line"
        tail -20 /var/log/xen/qemu-dm-$name.log 2>/dev/null
    fi
    xl destroy $name 2>/dev/null
}
# ------------------------------------------------------------------ 4. migration through listen mode
# A running PVH or HVM guest that checks its own memory every second (e2e/guests/memloop.S) is moved
# to a new domain by two `xenguest -mode listen`, driven as emu-manager drives them, with the
# stream on a socketpair between them (xg-e2e migrate), live and non-live. PASS: the target
# goes on from the source's last generation and finds every page as the source left it.
migrate_case() {  # NAME XG-E2E-MIGRATE-ARGS...
    name=$1; shift
    # The target's populate calls are counted by the shim (e2e/popcount), whichever engine runs.
    out=$(timeout 600 xg-e2e migrate --name $name --mem-mib 128 --xenguest /usr/bin/xenguest \
          --preload /usr/lib/libpopcount.so --poplog /tmp/poplog-$name "$@" 2>&1)
    echo "$out" | grep -E '^E2E (MIGRATE|emu save: live done)|xg-e2e:'
    line=$(echo "$out" | grep '^E2E MIGRATE')
    src=$(echo "$line" | sed -n 's/.* source=\([0-9]*\).*/\1/p')
    dst=$(echo "$line" | sed -n 's/.* target=\([0-9]*\).*/\1/p')
    if [ -z "$dst" ]; then
        fail "migrate $name"; echo "$out" | tail -30
        grep xenguest /var/log/messages | sed 's/^.*xenguest/xenguest/' | tail -40
        return
    fi
    sleep 5
    xl dmesg > /tmp/dmesg-$name
    # Xen prints guest lines as "(dN) [uptime] text".
    gens() { sed -n "s/^(d$1) .*XENGUEST-E2E-MEMLOOP gen \([0-9a-f]*\) bad.*/\1/p" /tmp/dmesg-$name; }
    last_src=$(gens $src | tail -1); first_dst=$(gens $dst | head -1); n_dst=$(gens $dst | wc -l)
    bad=$(grep -c "(d$dst) .*MEM-BAD" /tmp/dmesg-$name)
    grep "(d$dst) " /tmp/dmesg-$name | tail -3
    xl destroy $dst 2>/dev/null
    step=$(( 16#${first_dst:-0} - 16#${last_src:-0} ))
    # Live saves enable log-dirty through the binary's EBUSY-retrying shadow-op wrappers.
    wrapped=yes
    case "$*" in *--live*) grep -q "shadow ops go through the EBUSY retry" /var/log/messages || wrapped=no ;; esac
    # Where a native save's time went (its own log line), for the notes.
    split=$(grep "Saved d$src: " /var/log/messages | tail -1 | sed 's/.*; page types/page types/')
    [ -n "$split" ] && echo "@@SAVESPLIT $name $split"
    if [ "$n_dst" -ge 2 ] && [ "$bad" = 0 ] && [ $step -ge 1 ] && [ $step -le 2 ] && [ $wrapped = yes ]; then
        echo "@@MIGRATE $name PASS $line source_last_gen=$last_src target_first_gen=$first_dst target_ticks=$n_dst"
    else
        fail "migrate $name: source last gen ${last_src:-none}, target first ${first_dst:-none}, $n_dst ticks, $bad bad, shadow-op wrapper used: $wrapped"
        echo "@@MIGRATE $name FAIL $line"
        grep xenguest /var/log/messages | sed 's/^.*xenguest/xenguest/' | tail -40
    fi
}
# The Linux HVM guests (3b above) run last: after them, HVM and PVH guests on this nested
# test bed sometimes triple-fault under log-dirty or at suspend, whichever stream engine saves
# them (seen with libxenguest's as with ours; no domain or QEMU is left over), so they must
# not run before the migrations (e2e_linux_first=1 runs them first, to reproduce that).
linux_part() {
    mark linux-begin
    LINUX_TIMEOUT=$((BOOT_TIMEOUT * 2))
    case ",$LINUX_CASES," in *,ours,*) linux_hvm linux-hvm /usr/bin/xenguest ;; esac
    case ",$LINUX_CASES," in *,ocaml,*) linux_hvm ocaml-linux-hvm /usr/bin/xenguest-ocaml ;; esac
    case ",$LINUX_CASES," in *,xl,*) xl_linux_hvm xl-linux-hvm ;; esac
    echo "----- after the Linux HVM guests: domains and device models left -----"
    xl list; ps | grep -v grep | grep -i qemu
    echo "----- end -----"
    mark linux-end
}
want linux && [ "$LINUX_FIRST" = 1 ] && linux_part
if want migrate; then
    mark migrate-begin
    PVH="--image /guest/memloop.elf"
    HVM="--hvm --image /usr/lib/xen-4.17/boot/hvmloader --firmware /guest/memloop.fd --ipxe /guest/ipxe.rom"
    migrate_case pvh-live --live $PVH
    migrate_case pvh-nonlive $PVH
    migrate_case hvm-live --live $HVM
    migrate_case hvm-nonlive $HVM
    # libxenguest's engine on both sides, the baseline; then the differential: libxenguest's
    # save into our restore, and ours into libxenguest's.
    migrate_case hvm-live-libxenguest --live --save-engine libxenguest --restore-engine libxenguest $HVM
    migrate_case hvm-live-lib-to-native --live --save-engine libxenguest --restore-engine native $HVM
    migrate_case hvm-live-native-to-lib --live --save-engine native --restore-engine libxenguest $HVM
    migrate_case pvh-live-lib-to-native --live --save-engine libxenguest --restore-engine native $PVH
    migrate_case pvh-live-native-to-lib --live --save-engine native --restore-engine libxenguest $PVH
    # One suspended guest saved by both engines, the streams compared record by record.
    for k in pvh hvm; do
        if [ $k = hvm ]; then args=$HVM; else args=$PVH; fi
        out=$(timeout 600 xg-e2e stream-compare --name cmp-$k --mem-mib 128 \
              --xenguest /usr/bin/xenguest $args 2>&1)
        line=$(echo "$out" | grep '^E2E STREAMCMP')
        case "$line" in
            *verdict=PASS*) echo "@@STREAMCMP $k PASS $line" ;;
            *) fail "stream-compare $k"; echo "@@STREAMCMP $k FAIL $line"; echo "$out" | tail -20 ;;
        esac
    done
    # Our PVH save, wrapped as an xl save file, restored by `xl restore` (libxl's own restore).
    out=$(timeout 600 xg-e2e xl-restore --name xlr --mem-mib 128 --xenguest /usr/bin/xenguest \
          $PVH 2>&1)
    line=$(echo "$out" | grep '^E2E XLRESTORE')
    case "$line" in
        *verdict=PASS*) echo "@@XLRESTORE pvh PASS $line" ;;
        *) fail "xl restore of our PVH save"; echo "@@XLRESTORE pvh FAIL $line"; echo "$out" | tail -20 ;;
    esac
    mark migrate-end
fi

if want bench; then
# ------------------------------------------------------------------ 5. build benchmark
# The same guest built by our xenguest (xg-e2e around it, as xenopsd) and by `xl create -p`
# (libxl with the C libxenguest); populate calls counted by the same LD_PRELOAD shim on both.
# bench_pair GUEST MIB REP XL_NAME XG-E2E-MODE-AND-ARGS...: one build of each, xl's from
# /etc/xen/XL_NAME.cfg, as `@@BENCH ours|xl guest=GUEST size=MIB rep=REP ...` lines.
bench_pair() {
    guest=$1 size=$2 r=$3 xlname=$4
    shift 4
    pl=/tmp/pop-ours-$guest-$size-$r.log
    xg-e2e settle
    out=$(xg-e2e "$@" --name bench-$guest-$size-$r --mem-mib $size --xenguest /usr/bin/xenguest \
          --preload /usr/lib/libpopcount.so --poplog $pl 2>&1)
    line=$(echo "$out" | grep '^E2E name=')
    if [ -z "$line" ]; then fail "our $guest build $size MiB rep $r"; echo "$out" | tail -5; fi
    d=$(echo "$line" | sed -n 's/.* domid=\([0-9]*\).*/\1/p')
    pc=$(xg-e2e count $pl "$d" | grep 'comm=xenguest')
    # the core's own account: "<mode>_build done: ... in N populate calls, M hypercalls, T us"
    core=$(grep "xenguest-$d-build.*_build done" /var/log/messages | tail -1 |
           sed -n 's/.* \([0-9]*\) us$/core_us=\1/p')
    echo "@@BENCH ours guest=$guest size=$size rep=$r $line $pc $core"

    pl=/tmp/pop-xl-$guest-$size-$r.log; tl=/tmp/xl-$guest-$size-$r.log
    rm -f $pl
    xg-e2e settle
    t=$(XG_POPULATE_LOG=$pl LD_PRELOAD=/usr/lib/libpopcount.so \
        timeout 180 xg-e2e timed $tl -- xl -vvv create -p -e /etc/xen/$xlname.cfg)
    xrc=$?
    d=$(xl domid $xlname 2>/dev/null)
    if [ $xrc != 0 ] || [ -z "$d" ]; then fail "xl create $guest $size MiB rep $r"; tail -20 $tl; fi
    ph=$(xg-e2e xl-phase $tl)
    pc=$(xg-e2e count $pl "${d:-0}" | grep 'comm=xl ')
    echo "@@BENCH xl guest=$guest size=$size rep=$r domid=$d $t $ph $pc"
    xl destroy $xlname 2>/dev/null
}

mark bench-begin
for size in $(echo "$SIZES" | tr ',' ' '); do
    cat > /etc/xen/xl-bench-$size.cfg <<EOF
name = "xl-bench-$size"
type = "hvm"
memory = $size
maxmem = $size
vcpus = 1
vga = "none"
vnc = 0
sdl = 0
serial = "none"
on_crash = "destroy"
EOF
    r=1
    while [ $r -le "$REPS" ]; do
        bench_pair hvm $size $r xl-bench-$size hvm --image /usr/lib/xen-4.17/boot/hvmloader \
            --firmware /guest/marker.fd --ipxe /guest/ipxe.rom
        r=$((r+1))
    done
done
# Debian's kernel as a PV and as a PVH guest (256 MiB, the boot tests' kernel and initramfs),
# built but not run, at most 3 times each.
KREPS=$((REPS < 3 ? REPS : 3))
for mode in pv pvh; do
    if [ $mode = pv ]; then initrd=--ramdisk; else initrd=--module; fi
    cat > /etc/xen/xl-kbench-$mode.cfg <<EOF
name = "xl-kbench-$mode"
type = "$mode"
kernel = "/guest/vmlinuz"
ramdisk = "/guest/initrd.cpio"
extra = "console=hvc0"
memory = 256
maxmem = 256
vcpus = 1
on_crash = "destroy"
EOF
    r=1
    while [ $r -le "$KREPS" ]; do
        bench_pair linux-$mode 256 $r xl-kbench-$mode $mode --image /guest/vmlinuz \
            $initrd /guest/initrd.cpio --cmdline "console=hvc0"
        r=$((r+1))
    done
done
mark bench-end
fi

if want storm; then
# ------------------------------------------------------------------ 6. in-process against fork/exec
# The same builds by fork/exec of the binary (xenopsd today) and by one long-lived OCaml process
# building in-process (xenguest-ocaml -serve, as xenopsd would): one at a time, interleaved, then
# 8 and 16 at once (threads in one process against processes), the host's free pages checked
# after each burst; and Debian's kernel as PVH, where the in-process repeats reuse the
# decompressed kernel. `@@STORM` lines for `xg-e2e storm-report`.
mark storm-begin
storm() {
    out=$(timeout 900 xg-e2e storm "$@" --xenguest /usr/bin/xenguest --server /usr/bin/xenguest-ocaml 2>&1)
    rc=$?
    echo "$out" | grep '^STORM ' | sed 's/^/@@/'
    if [ $rc != 0 ]; then fail "storm $*"; echo "$out" | grep -v '^STORM\|^E2E exec\|^SETTLE\|^xenguest-ocaml\[' | tail -8; fi
}
storm hvm --name hvm --mem-mib 128 --image /usr/lib/xen-4.17/boot/hvmloader \
    --firmware /guest/marker.fd --ipxe /guest/ipxe.rom --seq 8 --burst 8,16
storm pvh --name linux-pvh --mem-mib 256 --image /guest/vmlinuz --module /guest/initrd.cpio \
    --cmdline "console=hvc0" --seq 3
mark storm-end
fi

want linux && [ "$LINUX_FIRST" != 1 ] && linux_part
finish
