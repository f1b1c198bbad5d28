//! `xg-e2e`: the e2e test toolstack, run in dom0 of a real Xen. It does what xenopsd does around
//! `xenguest` (create the empty domain, allocate the event channels, write the platform keys, run
//! the binary with xenopsd's argv, write the store and console keys, introduce the domain to
//! xenstored, unpause it) and the measuring the e2e run needs.
//!
//! ```text
//! xg-e2e hvm --name N --mem-mib M --xenguest PATH --image HVMLOADER [--firmware F] [--ipxe R]
//!            [--vcpus V] [--boot] [--timeout-s S] [--preload SO --poplog FILE]
//!            [--start-mib S (PoD when < M)] [--vcpus-current C] [--bios seabios]
//!            [--dm QEMU --kernel K --initrd I [--append A] [--serial FILE]]
//!            [--token T (data/e2e-token)] [--marker TEXT (timed in the serial file)]
//!                                     with --dm, Debian's QEMU is the device model (dm.rs)
//! xg-e2e run --domid D --timeout-s S [--serial FILE --marker TEXT]
//!                                     unpause a built domain (xl create -p), time its marker
//! xg-e2e check-hvm-marker --line L --domid D --token T --vcpus V --vcpus-current C
//!            --mem-mib M --static-max-kib K --target-kib K [--paused-kib K]
//!                                     the HVM Linux guest's marker against what it was promised
//! xg-e2e pvh|pv --name N --mem-mib M --xenguest PATH --image KERNEL [--cmdline C] [--vcpus V]
//!            [--ramdisk R (PV)] [--module M (PVH)] [--boot] [--timeout-s S]
//!                                     (a PVH or PV guest; the console ring is printed)
//! xg-e2e migrate --xenguest PATH --image KERNEL [--live] [--run-s S]
//!                                     (a PVH guest moved to a new domain through listen mode)
//! xg-e2e stream-compare [--hvm] GUEST-OPTS
//!                                     one suspended guest saved non-live by libxenguest's engine
//!                                     and by ours, the streams compared record by record
//! xg-e2e xl-restore GUEST-OPTS         a PVH guest saved by our engine, restored by `xl restore`
//! xg-e2e storm hvm|pvh GUEST-OPTS --server PATH [--seq N] [--burst 8,16]
//!                                     builds by fork/exec of --xenguest against one in-process
//!                                     server (xenguest-ocaml -serve), one by one and in bursts
//! xg-e2e firmware OUT                 write the marker firmware
//! xg-e2e settle                       wait until Xen has scrubbed the pages of dead domains
//! xg-e2e count LOG DOMID              populate calls per process from the popcount shim's log
//! xg-e2e xl-phase LOG                 libxenguest's build time and page counts in a timed xl log
//! xg-e2e timed LOG -- CMD ARGS...     run CMD, its output stamped with ms since start into LOG
//! xg-e2e report SERIAL_LOG QEMU_S     the BENCHMARKS.md section from an e2e serial log
//! xg-e2e migration-report SERIAL_LOG QEMU_S   its migration section
//! xg-e2e storm-report SERIAL_LOG QEMU_S       its in-process section
//! ```
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    reason = "a test harness: xenstore record lengths and small counts it made itself"
)]

mod compare;
mod dm;
mod emu;
mod storm;

use std::ffi::CString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::FromRawFd;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use xen_sys as sys;
use xenguest::hypervisor::xenctrl::XenCtrl;
use xenguest::hypervisor::{Hypervisor, XcError};
use xenguest::types::{DomId, Gfn, MapAddr, MapFrame, Mfn};

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("hvm") => guest(Mode::Hvm, &args[1..]),
        Some("pvh") => guest(Mode::Pvh, &args[1..]),
        Some("pv") => guest(Mode::Pv, &args[1..]),
        Some("run") => run(&args[1..]),
        Some("check-hvm-marker") => check_hvm_marker(&args[1..]),
        Some("migrate") => emu::migrate(&args[1..]),
        Some("stream-compare") => compare::stream_compare(&args[1..]),
        Some("xl-restore") => compare::xl_restore(&args[1..]),
        Some("storm") if args.len() > 1 => storm::storm(&args[1..]),
        Some("firmware") if args.len() == 2 => std::fs::write(
            &args[1],
            xg_e2e::marker_firmware("guest firmware reached; domain built by the Rust xenguest"),
        )
        .map_err(|e| format!("{}: {e}", args[1])),
        Some("count") if args.len() == 3 => count(&args[1], &args[2]),
        Some("settle") => settle(),
        Some("xl-phase") if args.len() == 2 => xl_phase(&args[1]),
        Some("timed") if args.len() > 3 && args[2] == "--" => timed(&args[1], &args[3..]),
        Some("report") if args.len() == 3 => print_report(&args[1], &args[2], xg_e2e::bench_report),
        Some("storm-report") if args.len() == 3 => {
            print_report(&args[1], &args[2], xg_e2e::storm_report)
        }
        Some("migration-report") if args.len() == 3 => {
            print_report(&args[1], &args[2], xg_e2e::migration_report)
        }
        _ => Err(
            "usage: xg-e2e hvm|pvh|pv|firmware|count|xl-phase|timed ... (see the source)".into(),
        ),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xg-e2e: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Print a BENCHMARKS.md section made by `section` from the serial log at `log` and the QEMU
/// run's length in seconds.
fn print_report(log: &str, qemu_s: &str, section: fn(&str, u64) -> String) -> Res<()> {
    let text = std::fs::read(log).map_err(|e| format!("{log}: {e}"))?;
    print!(
        "{}",
        section(&String::from_utf8_lossy(&text), qemu_s.parse().unwrap_or(0))
    );
    Ok(())
}

/// Wait (at most 120 s) until Xen has no free pages left to scrub, so that every timed build
/// starts from the same heap: pages of destroyed domains are scrubbed in the background, and a
/// populate that meets dirty pages scrubs them itself, which would charge one builder for the
/// other's guest.
fn settle() -> Res<()> {
    let xc = XenCtrl::open().map_err(xc_err)?;
    wait_scrubbed(&xc).map(|_| ())
}

/// [`settle`] on an open handle: the free pages once scrubbing is done, and how long it took.
fn wait_scrubbed(xc: &XenCtrl) -> Res<(u64, Duration)> {
    let start = Instant::now();
    loop {
        let mut info = sys::xc_physinfo_t::default();
        xc.call("xc_physinfo", |xch| {
            // SAFETY: `info` is a writable xc_physinfo_t.
            unsafe { sys::xc_physinfo(xch, &mut info) }
        })
        .map_err(xc_err)?;
        if info.scrub_pages == 0 || start.elapsed() > Duration::from_secs(120) {
            println!(
                "SETTLE waited_ms={} scrub_pages={} free_pages={}",
                start.elapsed().as_millis(),
                info.scrub_pages,
                info.free_pages
            );
            return Ok((info.free_pages, start.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn count(path: &str, domid: &str) -> Res<()> {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let domid: u32 = domid.parse().map_err(|_| format!("bad domid {domid}"))?;
    for (comm, c) in xg_e2e::count_populates(&log, domid) {
        println!(
            "POPCOUNT comm={comm} domid={domid} calls={} populate_us={} extents={} pages={} {} {}",
            c.calls,
            c.us,
            c.extents,
            c.pages(),
            c.extents_text(),
            c.us_text()
        );
    }
    Ok(())
}

fn xl_phase(path: &str) -> Res<()> {
    let log = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    println!(
        "XLPHASE libxenguest_build_ms={} allocation=\"{}\"",
        xg_e2e::libxenguest_build_ms(&log)
            .map(|v| v.to_string())
            .unwrap_or_else(|| "?".into()),
        xg_e2e::libxenguest_allocation(&log).unwrap_or_else(|| "?".into())
    );
    Ok(())
}

/// Run `cmd` with stdout and stderr into one pipe; each line goes to `log` as `[<ms>] line`.
fn timed(log: &str, cmd: &[String]) -> Res<()> {
    let mut out = std::fs::File::create(log).map_err(|e| format!("{log}: {e}"))?;
    let (r, w) = pipe()?;
    let w2 = w.try_clone().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::from(w))
        .stderr(Stdio::from(w2))
        .spawn()
        .map_err(|e| format!("{}: {e}", cmd[0]))?;
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let line = line.unwrap_or_default();
            let _ = writeln!(out, "[{:6}] {line}", start.elapsed().as_millis());
        }
    });
    let status = child.wait().map_err(|e| e.to_string())?;
    let ms = start.elapsed().as_millis();
    let _ = reader.join();
    println!("TIMED wall_ms={ms} rc={}", status.code().unwrap_or(-1));
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} exited with {status}", cmd[0]))
    }
}

/// A pipe whose ends are close-on-exec (children get only what they are handed explicitly:
/// a leaked write end would keep a reader from ever seeing EOF).
fn pipe() -> Res<(std::fs::File, std::fs::File)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two ints, as pipe2(2) wants.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe(2) returned two fresh descriptors that nothing else owns.
    Ok(unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    })
}

/// The three build modes, as xenopsd drives them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Hvm,
    Pvh,
    Pv,
}

impl Mode {
    /// xenguest's `-mode`.
    fn xenguest_mode(self) -> &'static str {
        match self {
            Mode::Hvm => "hvm_build",
            Mode::Pvh => "pvh_build",
            Mode::Pv => "linux_build",
        }
    }
}

/// Options of `xg-e2e hvm|pvh|pv`.
struct GuestOpts {
    mode: Mode,
    name: String,
    mem_mib: u64,
    vcpus: u32,
    xenguest: String,
    image: String,
    cmdline: String,
    ramdisk: String,
    module: Option<String>,
    firmware: Option<String>,
    ipxe: Option<String>,
    boot: bool,
    timeout: Duration,
    preload: Option<(String, String)>,
    /// `-mem_start_mib` (and `memory/target`): populate-on-demand when below `mem_mib`.
    start_mib: Option<u64>,
    /// `platform/vcpu/current`: the vCPUs online at boot (default: all).
    vcpus_current: Option<u32>,
    /// `hvmloader/bios` (for a guest booted by hvmloader's SeaBIOS).
    bios: Option<String>,
    /// The device model, for a guest that runs an operating system.
    dm: Option<dm::DmOpts>,
    /// Written to `data/e2e-token` before the build, for the guest to read back.
    token: Option<String>,
    /// The guest prints this in its serial file once it is up: the time to it is measured.
    marker: Option<String>,
}

impl GuestOpts {
    fn start_mib(&self) -> u64 {
        self.start_mib.unwrap_or(self.mem_mib)
    }

    fn vcpus_current(&self) -> u32 {
        self.vcpus_current.unwrap_or(self.vcpus)
    }
}

fn parse_guest(mode: Mode, args: &[String]) -> Res<GuestOpts> {
    let mut o = GuestOpts {
        mode,
        name: "guest".into(),
        mem_mib: 128,
        vcpus: 1,
        xenguest: "/usr/bin/xenguest".into(),
        image: "/usr/lib/xen-4.17/boot/hvmloader".into(),
        cmdline: String::new(),
        ramdisk: String::new(),
        module: None,
        firmware: None,
        ipxe: None,
        boot: false,
        timeout: Duration::from_secs(120),
        preload: None,
        start_mib: None,
        vcpus_current: None,
        bios: None,
        dm: None,
        token: None,
        marker: None,
    };
    let mut it = args.iter();
    let mut poplog = None;
    let mut preload = None;
    let (mut qemu, mut kernel, mut initrd, mut append, mut serial) =
        (None, None, None, String::new(), None);
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--name" => o.name = val()?,
            "--mem-mib" => o.mem_mib = val()?.parse().map_err(|_| "bad --mem-mib")?,
            "--vcpus" => o.vcpus = val()?.parse().map_err(|_| "bad --vcpus")?,
            "--xenguest" => o.xenguest = val()?,
            "--image" => o.image = val()?,
            "--cmdline" => o.cmdline = val()?,
            "--ramdisk" => o.ramdisk = val()?,
            "--module" => o.module = Some(val()?),
            "--firmware" => o.firmware = Some(val()?),
            "--ipxe" => o.ipxe = Some(val()?),
            "--boot" => o.boot = true,
            "--timeout-s" => {
                o.timeout = Duration::from_secs(val()?.parse().map_err(|_| "bad --timeout-s")?)
            }
            "--preload" => preload = Some(val()?),
            "--poplog" => poplog = Some(val()?),
            "--start-mib" => {
                o.start_mib = Some(val()?.parse().map_err(|_| "bad --start-mib")?);
            }
            "--vcpus-current" => {
                o.vcpus_current = Some(val()?.parse().map_err(|_| "bad --vcpus-current")?);
            }
            "--bios" => o.bios = Some(val()?),
            "--dm" => qemu = Some(val()?),
            "--kernel" => kernel = Some(val()?),
            "--initrd" => initrd = Some(val()?),
            "--append" => append = val()?,
            "--serial" => serial = Some(val()?),
            "--token" => o.token = Some(val()?),
            "--marker" => o.marker = Some(val()?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    o.preload = preload.zip(poplog);
    if let Some(qemu) = qemu {
        let (Some(kernel), Some(initrd)) = (kernel, initrd) else {
            return Err("--dm needs --kernel and --initrd".into());
        };
        let serial = serial.unwrap_or_else(|| format!("/tmp/{}.serial", o.name));
        o.dm = Some(dm::DmOpts {
            qemu,
            kernel,
            initrd,
            append,
            serial,
        });
    }
    if o.start_mib() > o.mem_mib || o.vcpus_current() > o.vcpus || o.vcpus_current() == 0 {
        return Err("--start-mib above --mem-mib, or --vcpus-current not in 1..=--vcpus".into());
    }
    Ok(o)
}

fn xc_err(e: XcError) -> String {
    e.to_string()
}

/// A libxenstore connection (`xs_open(0)`), closed on drop.
struct Xs(*mut sys::xs_handle);

impl Xs {
    fn open() -> Res<Self> {
        // SAFETY: plain libxenstore call; NULL on failure.
        let h = unsafe { sys::xs_open(0) };
        if h.is_null() {
            return Err(format!("xs_open: {}", std::io::Error::last_os_error()));
        }
        Ok(Xs(h))
    }

    fn cstr(s: &str) -> Res<CString> {
        CString::new(s).map_err(|_| format!("NUL in {s:?}"))
    }

    fn write(&self, path: &str, value: &str) -> Res<()> {
        let p = Self::cstr(path)?;
        // SAFETY: open handle, NUL-terminated path, `value` readable for its length.
        let ok = unsafe {
            sys::xs_write(
                self.0,
                0,
                p.as_ptr(),
                value.as_ptr().cast(),
                value.len() as u32,
            )
        };
        ok.then_some(())
            .ok_or_else(|| format!("xs_write {path}: {}", std::io::Error::last_os_error()))
    }

    /// The value at `path`, or None (absent, or any failure: callers poll).
    fn read(&self, path: &str) -> Option<String> {
        let p = Self::cstr(path).ok()?;
        let mut len = 0u32;
        // SAFETY: open handle, NUL-terminated path, `len` writable; the result is malloc'd.
        let v = unsafe { sys::xs_read(self.0, 0, p.as_ptr(), &mut len) };
        if v.is_null() {
            return None;
        }
        // SAFETY: xs_read returned `len` readable bytes at `v`, which we free once.
        let out = unsafe {
            let bytes = std::slice::from_raw_parts(v.cast::<u8>(), len as usize);
            let s = String::from_utf8_lossy(bytes).into_owned();
            libc::free(v);
            s
        };
        Some(out)
    }

    fn mkdir(&self, path: &str) -> Res<()> {
        let p = Self::cstr(path)?;
        // SAFETY: open handle, NUL-terminated path.
        let ok = unsafe { sys::xs_mkdir(self.0, 0, p.as_ptr()) };
        ok.then_some(())
            .ok_or_else(|| format!("xs_mkdir {path}: {}", std::io::Error::last_os_error()))
    }

    /// Owner `owner` (full access), and `reader` may read.
    fn set_perms(&self, path: &str, owner: u32, reader: Option<u32>) -> Res<()> {
        let p = Self::cstr(path)?;
        let mut perms = vec![sys::xs_permissions {
            id: owner,
            perms: sys::XS_PERM_NONE,
        }];
        if let Some(r) = reader {
            perms.push(sys::xs_permissions {
                id: r,
                perms: sys::XS_PERM_READ,
            });
        }
        // SAFETY: open handle, NUL-terminated path, `perms` holds the count passed.
        let ok = unsafe {
            sys::xs_set_permissions(
                self.0,
                0,
                p.as_ptr(),
                perms.as_mut_ptr(),
                perms.len() as u32,
            )
        };
        ok.then_some(()).ok_or_else(|| {
            format!(
                "xs_set_permissions {path}: {}",
                std::io::Error::last_os_error()
            )
        })
    }

    fn rm(&self, path: &str) {
        if let Ok(p) = Self::cstr(path) {
            // SAFETY: open handle, NUL-terminated path.
            unsafe { sys::xs_rm(self.0, 0, p.as_ptr()) };
        }
    }

    fn introduce(&self, domid: u32, store_mfn: u64, port: u32) -> Res<()> {
        // SAFETY: open handle, scalar arguments.
        let ok = unsafe { sys::xs_introduce_domain(self.0, domid, store_mfn, port) };
        ok.then_some(()).ok_or_else(|| {
            format!(
                "xs_introduce_domain {domid}: {}",
                std::io::Error::last_os_error()
            )
        })
    }

    fn release(&self, domid: u32) {
        // SAFETY: open handle, scalar argument.
        unsafe { sys::xs_release_domain(self.0, domid) };
    }
}

impl Drop for Xs {
    fn drop(&mut self) {
        // SAFETY: the handle came from xs_open and is closed once.
        unsafe { sys::xs_close(self.0) };
    }
}

/// `XEN_DOMCTL_GRANT_version(1)`.
const GRANT_VERSION_1: u32 = 1;

/// xenopsd's `VM.create`: createdomain (HVM: HAP and every emulated device but vPCI; PVH: HAP
/// and the local APIC only; PV: neither, as libxl/xenopsd), max vCPUs, max memory with slack,
/// the HAP pool (HVM and PVH), two unbound event channels. Returns (domid, store port, console
/// port).
fn create(xc: &XenCtrl, o: &GuestOpts) -> Res<(u32, u32, u32)> {
    let (flags, emulation_flags) = match o.mode {
        Mode::Hvm => (
            sys::XEN_DOMCTL_CDF_hvm | sys::XEN_DOMCTL_CDF_hap,
            sys::XEN_X86_EMU_ALL & !sys::XEN_X86_EMU_VPCI,
        ),
        Mode::Pvh => (
            sys::XEN_DOMCTL_CDF_hvm | sys::XEN_DOMCTL_CDF_hap,
            sys::XEN_X86_EMU_LAPIC,
        ),
        Mode::Pv => (0, 0),
    };
    let mut cfg = sys::xen_domctl_createdomain {
        flags,
        max_vcpus: o.vcpus,
        max_evtchn_port: 1023,
        max_grant_frames: 64,
        max_maptrack_frames: 1024,
        grant_opts: GRANT_VERSION_1,
        arch: sys::xen_arch_domainconfig {
            emulation_flags,
            misc_flags: 0,
        },
        ..Default::default()
    };
    let mut domid = 0u32;
    xc.call("xc_domain_create", |xch| {
        // SAFETY: `domid` and `cfg` are valid for the call; domid 0 lets Xen choose.
        unsafe { sys::xc_domain_create(xch, &mut domid, &mut cfg) }
    })
    .map_err(xc_err)?;
    let rest = || -> Res<(u32, u32)> {
        xc.call("xc_domain_max_vcpus", |xch| {
            // SAFETY: scalar arguments.
            unsafe { sys::xc_domain_max_vcpus(xch, domid, o.vcpus) }
        })
        .map_err(xc_err)?;
        // xenopsd/libxl: guest maximum plus 1 MiB slack (LIBXL_MAXMEM_CONSTANT) for the
        // special pages, plus what hvmloader populates for the firmware in the MMIO hole.
        let fw_kib = o
            .firmware
            .as_ref()
            .and_then(|f| std::fs::metadata(f).ok())
            .map(|m| m.len().div_ceil(1024))
            .unwrap_or(0);
        let maxmem_kib = (o.mem_mib << 10) + 1024 + fw_kib;
        xc.call("xc_domain_setmaxmem", |xch| {
            // SAFETY: scalar arguments.
            unsafe { sys::xc_domain_setmaxmem(xch, domid, maxmem_kib) }
        })
        .map_err(xc_err)?;
        if o.mode == Mode::Pv {
            // xenopsd/libxl: the PV guest's e820 (XENMEM_memory_map) is one RAM range this big.
            xc.call("xc_domain_set_memmap_limit", |xch| {
                // SAFETY: scalar arguments.
                unsafe { sys::xc_domain_set_memmap_limit(xch, domid, maxmem_kib as _) }
            })
            .map_err(xc_err)?;
        }
        if o.mode != Mode::Pv {
            let pool = xg_e2e::required_shadow_kib(o.mem_mib << 10, o.vcpus) << 10;
            xc.call("xc_set_paging_mempool_size", |xch| {
                // SAFETY: scalar arguments.
                unsafe { sys::xc_set_paging_mempool_size(xch, domid, pool) }
            })
            .map_err(xc_err)?;
        }
        let port = || {
            xc.call("xc_evtchn_alloc_unbound", |xch| {
                // SAFETY: scalar arguments; the remote end is dom0.
                unsafe { sys::xc_evtchn_alloc_unbound(xch, domid, 0) }
            })
            .map(|p| p as u32)
            .map_err(xc_err)
        };
        let store = port()?;
        let console = port()?;
        Ok((store, console))
    };
    match rest() {
        Ok((s, c)) => Ok((domid, s, c)),
        Err(e) => {
            destroy(xc, domid);
            Err(e)
        }
    }
}

fn destroy(xc: &XenCtrl, domid: u32) {
    let _ = xc.call("xc_domain_destroy", |xch| {
        // SAFETY: scalar arguments.
        unsafe { sys::xc_domain_destroy(xch, domid) }
    });
}

/// The keys xenopsd writes before the build: the domain's directory (dom0 owns it, the guest
/// reads it), its name, the platform map, the vCPUs online, the guest-writable directories,
/// and for UEFI-style firmware `hvmloader/bios`. Also the memory keys (KiB) xenopsd writes in
/// its build_post (xen-api ocaml/xenopsd/xc/domain.ml): the guest's balloon driver reads them
/// once it runs, and goes down to `memory/target` from what the build gave it.
fn write_pre_build_keys(xs: &Xs, domid: u32, o: &GuestOpts) -> Res<String> {
    let base = format!("/local/domain/{domid}");
    xs.mkdir(&base)?;
    xs.set_perms(&base, 0, Some(domid))?;
    let vcpus = o.vcpus.to_string();
    let current = o.vcpus_current().to_string();
    let static_max = (o.mem_mib << 10).to_string();
    let target = (o.start_mib() << 10).to_string();
    let mut keys = vec![
        ("name", o.name.as_str()),
        ("domid", ""),
        ("platform/acpi", "1"),
        ("platform/apic", "true"),
        ("platform/pae", "true"),
        ("platform/nx", "true"),
        ("platform/viridian", "false"),
        ("platform/acpi_s3", "0"),
        ("platform/acpi_s4", "0"),
        ("platform/vcpu/number", vcpus.as_str()),
        ("platform/vcpu/current", current.as_str()),
        ("memory/static-max", static_max.as_str()),
        ("memory/target", target.as_str()),
    ];
    let domid_s = domid.to_string();
    keys[1].1 = domid_s.as_str();
    match (&o.bios, &o.firmware) {
        (Some(bios), _) => keys.push(("hvmloader/bios", bios.as_str())),
        (None, Some(_)) => keys.push(("hvmloader/bios", "ovmf")),
        (None, None) => {}
    }
    if o.dm.is_some() {
        // hvmloader picks the ACPI tables (DSDT) for upstream QEMU by this key
        // (tools/firmware/hvmloader/util.c); libxl writes it (libxl_create.c).
        keys.push(("platform/device-model", "qemu_xen"));
    }
    if let Some(t) = &o.token {
        keys.push(("data/e2e-token", t.as_str()));
    }
    for (k, v) in keys {
        xs.write(&format!("{base}/{k}"), v)?;
    }
    for cpu in 0..o.vcpus {
        let state = if cpu < o.vcpus_current() {
            "online"
        } else {
            "offline"
        };
        xs.write(&format!("{base}/cpu/{cpu}/availability"), state)?;
    }
    // Places the guest may write, as xenopsd makes them: hvmloader records its ACPI generation
    // id under hvmloader, Linux its shutdown features under control, drivers their versions.
    for dir in [
        "data",
        "hvmloader",
        "control",
        "attr",
        "drivers",
        "feature",
        "error",
    ] {
        xs.mkdir(&format!("{base}/{dir}"))?;
        xs.set_perms(&format!("{base}/{dir}"), domid, None)?;
    }
    Ok(base)
}

/// xenopsd's argv for this guest's build, without the control fds.
fn xenopsd_argv(o: &GuestOpts, domid: u32, store: u32, console: u32) -> Vec<String> {
    let mem = o.mem_mib.to_string();
    // xenopsd's per-mode arguments: PV gets `-ramdisk` ('' for none), PV and PVH the command
    // line, PVH its modules.
    let mut kernel_args: Vec<&str> = match o.mode {
        Mode::Hvm => vec![],
        Mode::Pvh => vec!["-cmdline", &o.cmdline, "-features", "", "-flags", "0"],
        Mode::Pv => vec![
            "-cmdline",
            &o.cmdline,
            "-ramdisk",
            &o.ramdisk,
            "-features",
            "",
            "-flags",
            "0",
        ],
    };
    if let (Mode::Pvh, Some(m)) = (o.mode, &o.module) {
        kernel_args.extend(["-module", m.as_str()]);
    }
    let head = ["-mode", o.mode.xenguest_mode(), "-image", &o.image];
    let tail = [
        "-domid",
        &domid.to_string(),
        "-store_port",
        &store.to_string(),
        "-store_domid",
        "0",
        "-console_port",
        &console.to_string(),
        "-console_domid",
        "0",
        "-mem_max_mib",
        &mem,
        "-mem_start_mib",
        &o.start_mib().to_string(),
    ];
    head.iter()
        .chain(&kernel_args)
        .chain(&tail)
        .map(|s| s.to_string())
        .collect()
}

/// Run xenguest as xenopsd does (control pipes prepended, stdio to /dev/null but stderr),
/// returning the control line and the wall time of the process.
fn run_xenguest(o: &GuestOpts, domid: u32, store: u32, console: u32) -> Res<(String, Duration)> {
    // Held from making the inheritable ends until the parent has closed its copies, so that a
    // build started on another thread (xg-e2e storm) forks without them: a sibling holding
    // our pipe's write end would keep us waiting for its EOF until it exits.
    static SPAWN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let spawning = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
    let (out_r, out_w) = pipe()?;
    let (in_r, in_w) = pipe()?;
    // The child's ends are inherited across exec, as forkexecd hands them to xenguest.
    for f in [&out_w, &in_r] {
        // SAFETY: F_SETFD on a descriptor we own; clearing FD_CLOEXEC only.
        if unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(f), libc::F_SETFD, 0) } != 0 {
            return Err(format!("fcntl: {}", std::io::Error::last_os_error()));
        }
    }
    let fd = |f: &std::fs::File| std::os::fd::AsRawFd::as_raw_fd(f).to_string();
    let argv: Vec<String> = ["-controloutfd", &fd(&out_w), "-controlinfd", &fd(&in_r)]
        .iter()
        .map(|s| s.to_string())
        .chain(xenopsd_argv(o, domid, store, console))
        .collect();
    let mut cmd = Command::new(&o.xenguest);
    cmd.args(&argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(fw) = &o.firmware {
        cmd.env("XENGUEST_OVMF", fw);
    }
    if let Some(rom) = &o.ipxe {
        cmd.env("XENGUEST_IPXE", rom);
    }
    if let Some((so, log)) = &o.preload {
        cmd.env("LD_PRELOAD", so).env("XG_POPULATE_LOG", log);
    }
    println!("E2E exec {} {}", o.xenguest, argv.join(" "));
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("{}: {e}", o.xenguest))?;
    drop(out_w);
    drop(in_r);
    drop(spawning);
    let mut line = String::new();
    let mut out_r = out_r;
    out_r
        .read_to_string(&mut line)
        .map_err(|e| format!("control fd: {e}"))?;
    let status = child.wait().map_err(|e| e.to_string())?;
    let took = start.elapsed();
    drop(in_w);
    let line = line.trim_end().to_string();
    if !status.success() || !line.starts_with("result:") {
        return Err(format!("xenguest failed ({status}): {line}"));
    }
    Ok((line, took))
}

/// Poll until the domain shuts down; its shutdown reason.
fn wait_shutdown(xc: &XenCtrl, domid: u32, timeout: Duration) -> Res<&'static str> {
    wait_shutdown_with(xc, domid, timeout, || {})
}

/// [`wait_shutdown`], calling `each` on every poll.
fn wait_shutdown_with(
    xc: &XenCtrl,
    domid: u32,
    timeout: Duration,
    mut each: impl FnMut(),
) -> Res<&'static str> {
    let start = Instant::now();
    loop {
        each();
        let Some(info) = dominfo(xc, domid)? else {
            return Ok("gone");
        };
        if info.crashed() != 0 {
            return Ok("crashed");
        }
        if info.shutdown() != 0 {
            return Ok(match info.shutdown_reason {
                0 => "poweroff",
                1 => "reboot",
                2 => "suspend",
                3 => "crash",
                4 => "watchdog",
                _ => "other",
            });
        }
        if start.elapsed() > timeout {
            return Ok("timeout");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Watches a growing file (a guest's serial log) for a marker, from where it last read.
struct MarkerWatch<'a> {
    path: &'a str,
    text: &'a str,
    read_to: u64,
    seen: Option<Duration>,
}

impl<'a> MarkerWatch<'a> {
    fn new(path: &'a str, text: &'a str) -> Self {
        MarkerWatch {
            path,
            text,
            read_to: 0,
            seen: None,
        }
    }

    /// Read what was appended; note `since.elapsed()` when the marker first shows.
    fn poll(&mut self, since: Instant) {
        use std::io::{Seek, SeekFrom};
        if self.seen.is_some() {
            return;
        }
        let Ok(mut f) = std::fs::File::open(self.path) else {
            return;
        };
        // Re-read the last line's worth, in case the marker straddles two reads; bytes, as a
        // serial log need not be UTF-8.
        let from = self.read_to.saturating_sub(256);
        let mut tail = Vec::new();
        if f.seek(SeekFrom::Start(from)).is_ok() && f.read_to_end(&mut tail).is_ok() {
            self.read_to = from + tail.len() as u64;
            let text = self.text.as_bytes();
            if text.is_empty() || tail.windows(text.len()).any(|w| w == text) {
                self.seen = Some(since.elapsed());
            }
        }
    }
}

/// What a run to shutdown saw.
struct Ran {
    /// The domain's pages (KiB) when it was unpaused: below its maximum if it is
    /// populate-on-demand (Xen counts the PoD cache, not the entries).
    paused_kib: u64,
    why: &'static str,
    ran: Duration,
    marker: Option<Duration>,
}

impl Ran {
    /// The summary's fields.
    fn fields(&self) -> String {
        format!(
            "paused_kib={} shutdown={} run_ms={}{}",
            self.paused_kib,
            self.why,
            self.ran.as_millis(),
            self.marker
                .map(|d| format!(" marker_ms={}", d.as_millis()))
                .unwrap_or_default()
        )
    }
}

/// `xc_domain_getinfo` of `domid`, or None once it is gone.
fn dominfo(xc: &XenCtrl, domid: u32) -> Res<Option<sys::xc_dominfo_t>> {
    let mut info = sys::xc_dominfo_t::default();
    let n = xc
        .call("xc_domain_getinfo", |xch| {
            // SAFETY: `info` is a writable array of one entry.
            unsafe { sys::xc_domain_getinfo(xch, domid, 1, &mut info) }
        })
        .map_err(xc_err)?;
    Ok((n == 1 && info.domid == domid).then_some(info))
}

/// The domain's current pages (`tot_pages`), in KiB.
fn domain_kib(xc: &XenCtrl, domid: u32) -> Res<u64> {
    let info = dominfo(xc, domid)?.ok_or(format!("domain {domid} is gone"))?;
    Ok(info.nr_pages << 2)
}

/// Unpause `domid` and wait for its shutdown (at most `timeout`), watching for `marker`.
fn run_until_shutdown(
    xc: &XenCtrl,
    domid: u32,
    timeout: Duration,
    mut marker: Option<MarkerWatch<'_>>,
) -> Res<Ran> {
    let paused_kib = domain_kib(xc, domid)?;
    let t0 = Instant::now();
    xc.call("xc_domain_unpause", |xch| {
        // SAFETY: scalar arguments.
        unsafe { sys::xc_domain_unpause(xch, domid) }
    })
    .map_err(xc_err)?;
    println!("E2E unpaused domain {domid}");
    let why = wait_shutdown_with(xc, domid, timeout, || {
        if let Some(m) = marker.as_mut() {
            m.poll(t0);
        }
    })?;
    if let Some(m) = marker.as_mut() {
        m.poll(t0);
    }
    Ok(Ran {
        paused_kib,
        why,
        ran: t0.elapsed(),
        marker: marker.and_then(|m| m.seen),
    })
}

/// `xg-e2e check-hvm-marker`: [`xg_e2e::check_hvm_marker`] from the command line; fails (and
/// names each difference) when the marker breaks a promise.
fn check_hvm_marker(args: &[String]) -> Res<()> {
    let mut line = None;
    let mut p = xg_e2e::HvmPromise {
        domid: 0,
        token: String::new(),
        vcpus: 1,
        vcpus_current: 1,
        mem_max_mib: 0,
        static_max_kib: 0,
        target_kib: 0,
        paused_kib: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().ok_or(format!("{a} needs a value"))?;
        let n = || v.parse::<u64>().map_err(|_| format!("bad {a} {v:?}"));
        match a.as_str() {
            "--line" => line = Some(v.clone()),
            "--domid" => p.domid = n()? as u32,
            "--token" => p.token = v.clone(),
            "--vcpus" => p.vcpus = n()? as u32,
            "--vcpus-current" => p.vcpus_current = n()? as u32,
            "--mem-mib" => p.mem_max_mib = n()?,
            "--static-max-kib" => p.static_max_kib = n()?,
            "--target-kib" => p.target_kib = n()?,
            "--paused-kib" => p.paused_kib = Some(n()?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let line = line.ok_or("--line is needed")?;
    let bad = xg_e2e::check_hvm_marker(&line, &p);
    if bad.is_empty() {
        println!("E2E CHECK PASS");
        Ok(())
    } else {
        Err(format!(
            "the guest's marker breaks a promise: {}",
            bad.join("; ")
        ))
    }
}

/// `xg-e2e run`: a domain another toolstack built paused (`xl create -p`), unpaused and timed.
fn run(args: &[String]) -> Res<()> {
    let (mut domid, mut timeout, mut serial, mut marker) = (None, 120, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--domid" => domid = Some(val()?.parse::<u32>().map_err(|_| "bad --domid")?),
            "--timeout-s" => timeout = val()?.parse().map_err(|_| "bad --timeout-s")?,
            "--serial" => serial = Some(val()?),
            "--marker" => marker = Some(val()?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let domid = domid.ok_or("--domid is needed")?;
    let xc = XenCtrl::open().map_err(xc_err)?;
    let watch = serial
        .as_deref()
        .zip(marker.as_deref())
        .map(|(p, m)| MarkerWatch::new(p, m));
    let ran = run_until_shutdown(&xc, domid, Duration::from_secs(timeout), watch)?;
    println!("E2E RUN domid={domid} {}", ran.fields());
    Ok(())
}

/// The text the guest wrote to its console ring (read after it stopped: a PV guest writes
/// its marker there). `console` is the result's console frame: an MFN (PV) or a gfn.
fn console_text(xc: &XenCtrl, domid: u32, console: MapFrame) -> Res<String> {
    let mut page = vec![0u8; 4096];
    xc.read_guest(DomId(domid), MapAddr::frame_start(console), &mut page)
        .map_err(xc_err)?;
    Ok(xg_e2e::console_output(&page))
}

/// The two frames of `result:<store> <console>[ <protocol>]`.
fn result_frames(line: &str) -> Res<(u64, u64)> {
    let nums: Vec<u64> = line
        .trim_start_matches("result:")
        .split_whitespace()
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    match nums[..] {
        [store, console] => Ok((store, console)),
        _ => Err(format!("unexpected control line {line:?}")),
    }
}

/// xenopsd's build_post: the store and console keys, then introduce the domain to xenstored.
fn build_post(
    xs: &Xs,
    base: &str,
    domid: u32,
    store_port: u32,
    console_port: u32,
    store_mfn: u64,
    console_mfn: u64,
) -> Res<()> {
    for (k, v) in [
        ("store/port", store_port.to_string()),
        ("store/ring-ref", store_mfn.to_string()),
        ("console/port", console_port.to_string()),
        ("console/ring-ref", console_mfn.to_string()),
        ("console/limit", "1048576".to_string()),
        ("console/type", "xenconsoled".to_string()),
        ("console/output", "pty".to_string()),
    ] {
        xs.write(&format!("{base}/{k}"), &v)?;
    }
    xs.introduce(domid, store_mfn, store_port)
}

/// How long QEMU may take to say `running` (libxl's LIBXL_DEVICE_MODEL_START_TIMEOUT is 60 s;
/// under nested emulation it needs more).
const DM_TIMEOUT: Duration = Duration::from_secs(120);

fn guest(mode: Mode, args: &[String]) -> Res<()> {
    let o = parse_guest(mode, args)?;
    let xc = XenCtrl::open().map_err(xc_err)?;
    let xs = Xs::open()?;
    let t0 = Instant::now();
    let (domid, store_port, console_port) = create(&xc, &o)?;
    let outcome = (|| -> Res<String> {
        let base = write_pre_build_keys(&xs, domid, &o)?;
        let create = t0.elapsed();
        let (line, build) = run_xenguest(&o, domid, store_port, console_port)?;
        let t1 = Instant::now();
        let (store_mfn, console_mfn) = result_frames(&line)?;
        let words = line.split_whitespace().count();
        if (mode == Mode::Pv) != (words == 3) {
            return Err(format!("control line {line:?} does not fit the mode"));
        }
        build_post(
            &xs,
            &base,
            domid,
            store_port,
            console_port,
            store_mfn,
            console_mfn,
        )?;
        let post = t1.elapsed();
        let mut summary = format!(
            "name={} domid={domid} mem_mib={} start_mib={} vcpus={} vcpus_current={} result=\"{}\" create_ms={:.1} build_ms={:.1} post_ms={:.1}",
            o.name,
            o.mem_mib,
            o.start_mib(),
            o.vcpus,
            o.vcpus_current(),
            line.trim_start_matches("result:"),
            create.as_secs_f64() * 1e3,
            build.as_secs_f64() * 1e3,
            post.as_secs_f64() * 1e3
        );
        // xenopsd starts the device model after the build, before the unpause.
        let _device_model = match &o.dm {
            Some(d) => {
                let argv = dm::qemu_argv(d, domid, &o.name, o.mem_mib, o.vcpus, o.vcpus_current());
                xs.mkdir(&format!("/local/domain/0/device-model/{domid}"))?;
                println!("E2E dm {} {}", d.qemu, argv.join(" "));
                let log = format!("/tmp/qemu-{}.log", o.name);
                let (dm, took) =
                    dm::DeviceModel::start(&argv, &d.qemu, &log, domid, DM_TIMEOUT, || {
                        xs.read(&dm::state_path(domid))
                    })?;
                summary += &format!(" dm_ms={:.1}", took.as_secs_f64() * 1e3);
                Some(dm)
            }
            None => None,
        };
        summary += &format!(" ready_ms={:.1}", t0.elapsed().as_secs_f64() * 1e3);
        if o.boot {
            let serial = o.dm.as_ref().map(|d| d.serial.as_str());
            let watch = serial
                .zip(o.marker.as_deref())
                .map(|(p, m)| MarkerWatch::new(p, m));
            let ran = run_until_shutdown(&xc, domid, o.timeout, watch)?;
            summary += &format!(" {}", ran.fields());
            if mode != Mode::Hvm {
                let console = match mode {
                    Mode::Pv => MapFrame::Mfn(Mfn(console_mfn)),
                    _ => MapFrame::Gfn(Gfn(console_mfn)),
                };
                match console_text(&xc, domid, console) {
                    Ok(text) => {
                        for l in text.lines() {
                            println!("E2E console {domid}: {l}");
                        }
                    }
                    Err(e) => println!("E2E console {domid}: unreadable: {e}"),
                }
            }
        }
        Ok(summary)
    })();
    xs.release(domid);
    xs.rm(&format!("/local/domain/{domid}"));
    xs.rm(&format!("/local/domain/0/device-model/{domid}"));
    destroy(&xc, domid);
    let summary = outcome?;
    println!("E2E {summary}");
    Ok(())
}
