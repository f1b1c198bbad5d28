//! `xg-e2e stream-compare`: one suspended guest saved non-live twice, by libxenguest's engine
//! and by the native one (`xenguest -mode hvm_save` with `XENGUEST_STREAM_ENGINE`), and the two
//! streams compared record by record with the project's codec: headers, CPU policy, every
//! pfn's type and page data, TSC info (`nsec` aside: it is the time of the save), HVM params,
//! and the HVM context record by record (Xen's save records; those that hold the time of the
//! save, the vCPUs' TSC and the timers, are reported, not failed). Prints
//! `E2E STREAMCMP verdict=PASS|FAIL ...` and the differences.

use super::{create, destroy, parse_guest, run_xenguest, write_pre_build_keys, Mode, Res, Xs};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;
use xen_sys as sys;
use xenguest::hypervisor::hvm_save;
use xenguest::hypervisor::xenctrl::XenCtrl;
use xenguest::migrate::stream::{PageType, Record, StreamReader};

/// Xen's HVM save typecodes whose contents follow the clock (xen/include/public/arch-x86/
/// hvm/save.h): CPU (its `tsc`), PIT, RTC, HPET, PMTIMER.
const CLOCK_RECORDS: [u16; 5] = [hvm_save::CPU, 10, 11, 12, 13];

/// A stream as the comparison sees it.
#[derive(Default)]
struct Summary {
    header: String,
    cpuid: String,
    msrs: String,
    /// pfn -> (type, FNV-1a of its data) for pfns with data; the last PAGE_DATA naming a pfn
    /// wins, as on restore.
    pages: BTreeMap<u64, (String, u64)>,
    /// pfns sent without data (holes), counted.
    holes: u64,
    tsc: String,
    params: BTreeMap<u64, u64>,
    context: Vec<(u16, u16, Vec<u8>)>,
    records: BTreeMap<String, u64>,
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn summarize(path: &str) -> Res<Summary> {
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut r = StreamReader::new(BufReader::new(file));
    let h = r.read_headers().map_err(|e| format!("{path}: {e}"))?;
    let mut s = Summary {
        header: format!("v{} {:?}", h.version, h.guest),
        ..Summary::default()
    };
    loop {
        let raw = r.next_record().map_err(|e| format!("{path}: {e}"))?;
        *s.records.entry(raw.name()).or_insert(0) += 1;
        match raw.decode().map_err(|e| format!("{path}: {e}"))? {
            Record::End => return Ok(s),
            Record::PageData(p) => {
                for (pfn, t, data) in p.pages() {
                    match data {
                        Some(d) => {
                            s.pages.insert(pfn.0, (format!("{t:?}"), fnv(d)));
                        }
                        None if t == PageType::XTab => s.holes += 1,
                        None => {
                            s.pages.insert(pfn.0, (format!("{t:?}"), 0));
                        }
                    }
                }
            }
            Record::TscInfo(t) => {
                s.tsc = format!(
                    "mode={} khz={} incarnation={}",
                    t.mode, t.khz, t.incarnation
                )
            }
            Record::HvmParams(ps) => s.params.extend(ps.iter().map(|p| (p.index, p.value))),
            Record::CpuidPolicy(l) => s.cpuid = format!("{l:?}"),
            Record::MsrPolicy(m) => s.msrs = format!("{m:?}"),
            Record::HvmContext(blob) => {
                for rec in hvm_save::records(blob) {
                    let (typecode, instance, body) =
                        rec.map_err(|e| format!("{path}: HVM context: {e}"))?;
                    s.context.push((typecode, instance, body.to_vec()));
                }
            }
            _ => {}
        }
    }
}

/// Build the created domain with our xenguest as xenopsd does, let it run 3 s, then suspend it
/// by force (the memloop guest has no PV drivers) and wait until it is.
fn build_run_suspend(
    xc: &XenCtrl,
    xs: &Xs,
    o: &super::GuestOpts,
    (dom, store, console): (u32, u32, u32),
) -> Res<()> {
    let base = write_pre_build_keys(xs, dom, o)?;
    let (line, _) = run_xenguest(o, dom, store, console)?;
    let (store_frame, console_frame) = super::result_frames(&line)?;
    super::build_post(xs, &base, dom, store, console, store_frame, console_frame)?;
    xc.call("xc_domain_unpause", |xch| {
        // SAFETY: scalar arguments.
        unsafe { sys::xc_domain_unpause(xch, dom) }
    })
    .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_secs(3));
    xc.call("xc_domain_shutdown", |xch| {
        // SAFETY: scalar arguments.
        unsafe { sys::xc_domain_shutdown(xch, dom, sys::SHUTDOWN_suspend as i32) }
    })
    .map_err(|e| e.to_string())?;
    if super::wait_shutdown(xc, dom, Duration::from_secs(30))? != "suspend" {
        return Err(format!("domain {dom} did not suspend"));
    }
    Ok(())
}

/// `xenguest -mode hvm_save` of the suspended `domid` into `path` with `engine`, answering
/// its `suspend:` at once (the domain is suspended already).
fn save(xenguest: &str, domid: u32, engine: &str, path: &str) -> Res<()> {
    let out = std::fs::File::create(path).map_err(|e| format!("{path}: {e}"))?;
    let fd = out.as_raw_fd();
    let d = domid.to_string();
    let mut cmd = Command::new(xenguest);
    cmd.args(["-mode", "hvm_save", "-domid", &d, "-fd", "3"])
        .args(["-controloutfd", "1", "-controlinfd", "0", "-debug"])
        .env("XENGUEST_STREAM_ENGINE", engine)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    // SAFETY: only dup2/fcntl run between fork and exec; `out` lives until the child exits.
    unsafe {
        cmd.pre_exec(move || {
            let rc = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("{xenguest}: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut last = String::new();
    for line in stdout.lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line == "suspend:" {
            stdin.write_all(b"done\n").map_err(|e| e.to_string())?;
        }
        last = line;
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    drop(out);
    if !status.success() || !last.starts_with("result:") {
        return Err(format!("{engine} save: {last} ({status})"));
    }
    Ok(())
}

pub fn stream_compare(args: &[String]) -> Res<()> {
    let mode = if args.iter().any(|a| a == "--hvm") {
        Mode::Hvm
    } else {
        Mode::Pvh
    };
    let rest: Vec<String> = args.iter().filter(|a| *a != "--hvm").cloned().collect();
    let o = parse_guest(mode, &rest)?;
    let xc = XenCtrl::open().map_err(|e| e.to_string())?;
    let xs = Xs::open()?;
    let (dom, store, console) = create(&xc, &o)?;
    let outcome = (|| -> Res<String> {
        build_run_suspend(&xc, &xs, &o, (dom, store, console))?;
        let (lib, native) = ("/tmp/stream-libxenguest", "/tmp/stream-native");
        save(&o.xenguest, dom, "libxenguest", lib)?;
        save(&o.xenguest, dom, "native", native)?;
        let (a, b) = (summarize(lib)?, summarize(native)?);
        let _ = std::fs::remove_file(lib);
        let _ = std::fs::remove_file(native);
        Ok(differences(&a, &b))
    })();
    xs.release(dom);
    xs.rm(&format!("/local/domain/{dom}"));
    destroy(&xc, dom);
    let report = outcome?;
    println!("{report}");
    Ok(())
}

/// Records per type as `NAME:count,...`.
fn counts(records: &BTreeMap<String, u64>) -> String {
    records
        .iter()
        .map(|(k, v)| format!("{}:{v}", k.replace(' ', "_")))
        .collect::<Vec<_>>()
        .join(",")
}

/// The verdict line and what differs between libxenguest's stream `a` and ours `b`.
fn differences(a: &Summary, b: &Summary) -> String {
    let mut bad = Vec::new();
    let mut noted = Vec::new();
    for (what, x, y) in [
        ("header", &a.header, &b.header),
        ("CPUID policy", &a.cpuid, &b.cpuid),
        ("MSR policy", &a.msrs, &b.msrs),
        ("TSC info (nsec aside)", &a.tsc, &b.tsc),
    ] {
        if x != y {
            bad.push(format!("{what}: {x} / {y}"));
        }
    }
    if a.params != b.params {
        bad.push(format!("HVM params: {:?} / {:?}", a.params, b.params));
    }
    let differing: Vec<u64> = a
        .pages
        .iter()
        .filter(|(pfn, v)| b.pages.get(pfn) != Some(v))
        .map(|(&pfn, _)| pfn)
        .chain(b.pages.keys().filter(|p| !a.pages.contains_key(p)).copied())
        .collect();
    if !differing.is_empty() {
        bad.push(format!(
            "{} pfns differ (type or data), first {:#x?}",
            differing.len(),
            &differing[..differing.len().min(8)]
        ));
    }
    if a.holes != b.holes {
        bad.push(format!("holes: {} / {}", a.holes, b.holes));
    }
    if a.context.len() != b.context.len() {
        bad.push(format!(
            "HVM context: {} / {} records",
            a.context.len(),
            b.context.len()
        ));
    }
    for (x, y) in a.context.iter().zip(&b.context) {
        if x == y {
            continue;
        }
        let bytes =
            x.2.iter().zip(&y.2).filter(|(p, q)| p != q).count() + x.2.len().abs_diff(y.2.len());
        let text = format!("context record {}:{} differs in {bytes} bytes", x.0, x.1);
        if x.0 == y.0 && x.1 == y.1 && CLOCK_RECORDS.contains(&x.0) {
            noted.push(text);
        } else {
            bad.push(text);
        }
    }
    format!(
        "E2E STREAMCMP verdict={} pages={} holes={} context_records={} records_lib={} records_native={} \
         differences=\"{}\" clock_records_differing=\"{}\"",
        if bad.is_empty() { "PASS" } else { "FAIL" },
        a.pages.len(),
        a.holes,
        a.context.len(),
        counts(&a.records),
        counts(&b.records),
        bad.join("; "),
        noted.join("; ")
    )
}

/// The xl save file around a bare libxc stream (xen-project/xen `tools/xl/xl.h`, the
/// `libxl-migration-stream.pandoc` layout): xl's header with the guest's config as xl text,
/// libxl's stream header (version 2), a LIBXC_CONTEXT record, the libxc stream, libxl's END.
pub fn xl_save_file(config: &str, libxc: &[u8]) -> Vec<u8> {
    const XL_MAGIC: &[u8; 32] = b"Xen saved domain, xl format\n \0 \r";
    const XL_MANDATORY_FLAG_STREAMV2: u32 = 1 << 1;
    const LIBXL_IDENT: u64 = 0x4c69_6278_6c46_6d74; // "LibxlFmt"
    const REC_LIBXC_CONTEXT: u32 = 1;
    const REC_END: u32 = 0;
    let mut config = config.as_bytes().to_vec();
    config.push(0);
    let mut out = XL_MAGIC.to_vec();
    out.extend_from_slice(&0x0102_0304u32.to_ne_bytes());
    out.extend_from_slice(&XL_MANDATORY_FLAG_STREAMV2.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&(4 + config.len() as u32).to_ne_bytes());
    out.extend_from_slice(&(config.len() as u32).to_ne_bytes());
    out.extend_from_slice(&config);
    out.extend_from_slice(&LIBXL_IDENT.to_be_bytes());
    out.extend_from_slice(&2u32.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    for (rtype, then) in [(REC_LIBXC_CONTEXT, Some(libxc)), (REC_END, None)] {
        out.extend_from_slice(&rtype.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        if let Some(stream) = then {
            out.extend_from_slice(stream);
        }
    }
    out
}

/// `xg-e2e xl-restore`: a PVH guest built by our toolstack, suspended and saved non-live by the
/// native engine, the stream wrapped as an xl save file and restored by `xl restore`; PASS when
/// the restored guest goes on ticking from where it was. Prints `E2E XLRESTORE ...`.
pub fn xl_restore(args: &[String]) -> Res<()> {
    let o = parse_guest(Mode::Pvh, args)?;
    let xc = XenCtrl::open().map_err(|e| e.to_string())?;
    let xs = Xs::open()?;
    let (dom, store, console) = create(&xc, &o)?;
    let (libxc, file) = ("/tmp/xl-restore.libxc", "/tmp/xl-restore.save");
    let saved = (|| -> Res<()> {
        build_run_suspend(&xc, &xs, &o, (dom, store, console))?;
        save(&o.xenguest, dom, "native", libxc)
    })();
    let last_gen = memloop_gens(dom).last().cloned();
    xs.release(dom);
    xs.rm(&format!("/local/domain/{dom}"));
    destroy(&xc, dom);
    saved?;
    let stream = std::fs::read(libxc).map_err(|e| format!("{libxc}: {e}"))?;
    let _ = std::fs::remove_file(libxc);
    let config = format!(
        "name = \"xl-restore\"\ntype = \"pvh\"\nkernel = \"{}\"\nmemory = {}\nvcpus = 1\n",
        o.image, o.mem_mib
    );
    std::fs::write("/tmp/xl-restore.cfg", &config).map_err(|e| e.to_string())?;
    std::fs::write(file, xl_save_file(&config, &stream)).map_err(|e| e.to_string())?;
    let out = Command::new("xl")
        .args(["restore", "/tmp/xl-restore.cfg", file])
        .output()
        .map_err(|e| format!("xl: {e}"))?;
    let _ = std::fs::remove_file(file);
    let said = String::from_utf8_lossy(&out.stderr).replace('\n', " | ");
    let domid = Command::new("xl")
        .args(["domid", "xl-restore"])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u32>()
                .ok()
        });
    let verdict = match domid {
        Some(d) if out.status.success() => {
            std::thread::sleep(Duration::from_secs(5));
            let gens = memloop_gens(d);
            let _ = Command::new("xl").args(["destroy", "xl-restore"]).status();
            let first = gens.first().cloned().unwrap_or_default();
            let step = match (
                u64::from_str_radix(&first, 16),
                last_gen.as_deref().map(|g| u64::from_str_radix(g, 16)),
            ) {
                (Ok(f), Some(Ok(l))) => f.checked_sub(l),
                _ => None,
            };
            let ok = gens.len() >= 2 && matches!(step, Some(1 | 2)) && !memloop_bad(d);
            format!(
                "verdict={} restored_domid={d} source_last_gen={} target_first_gen={first} target_ticks={}",
                if ok { "PASS" } else { "FAIL" },
                last_gen.unwrap_or_default(),
                gens.len()
            )
        }
        _ => format!("verdict=FAIL xl_status={} xl_said=\"{said}\"", out.status),
    };
    println!("E2E XLRESTORE {verdict}");
    Ok(())
}

/// The memloop guest's generations in Xen's console for domain `d` (`(dN) ... gen G bad B`).
fn memloop_gens(d: u32) -> Vec<String> {
    xl_dmesg_lines(d)
        .iter()
        .filter_map(|l| l.split("XENGUEST-E2E-MEMLOOP gen ").nth(1))
        .filter_map(|rest| rest.split(' ').next().map(str::to_string))
        .collect()
}

/// Whether the memloop guest `d` reported a bad page.
fn memloop_bad(d: u32) -> bool {
    xl_dmesg_lines(d).iter().any(|l| l.contains("MEM-BAD"))
}

fn xl_dmesg_lines(d: u32) -> Vec<String> {
    let prefix = format!("(d{d}) ");
    Command::new("xl")
        .arg("dmesg")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with(&prefix))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
