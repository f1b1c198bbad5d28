//! Robustness (docs/ROBUSTNESS.md): try to break the builder and record what held.
//!
//! * every hypercall of every build scenario (HVM, PVH, PV) failed in turn (ENOMEM, EINVAL,
//!   EBUSY) and every `populate_physmap` cut short (0, 1, half, all but one extent);
//! * every store operation failed in turn (EIO, EACCES, EAGAIN);
//! * 64 builds in parallel on one simulated host, contending for 1 GiB chunks;
//! * the real xenstored killed mid-build, after each operation in turn;
//! * the fuzz checks (`fuzz/src/checks.rs`): their regression inputs replayed and a bounded
//!   randomized pass, so stable `cargo test` runs them too.
//!
//! Each build must return the C-format error for the failing step, never panic, never leave
//! a claim, and after the toolstack destroys the domain the host's books must balance.
//! Counts are printed (`cargo test --test robustness -- --nocapture`) for docs/ROBUSTNESS.md.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    reason = "tests pack small test values into fields and read counts back from trace lines"
)]

#[path = "../fuzz/src/checks.rs"]
#[allow(dead_code)]
mod checks;
mod common;
#[path = "support/xenstored.rs"]
mod xenstored;

use common::{request, Fixture};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};
use xenguest::boot::param;
use xenguest::builder::{self, BuildEnv, BuildMode, BuildOutput, HostPaths};
use xenguest::hypervisor::sim::{
    xc_function, DomainConfig, Fault, FaultAction, SimHost, TraceEntry,
};
use xenguest::hypervisor::{strerror, Hypervisor, PciSbdf, ReservedRange};
use xenguest::request::BuildRequest;
use xenguest::store::{domain_path, MemoryStore, Store, StoreResult, XenstoredStore};
use xenguest::types::DomId;
use xenguest::{Error, ErrorKind};

// ---------------------------------------------------------------------------------------
// Scenarios: one line per build to break. A new one (or a new mode) is one more line here,
// plus rows in `expected` where its steps differ.
// ---------------------------------------------------------------------------------------

/// A build to break: its mode, and how the toolstack prepares it on a fresh fixture
/// (domain created, platform keys written, memory claimed).
struct Scenario {
    name: &'static str,
    mode: BuildMode,
    setup: fn(&Fixture) -> BuildRequest,
}

const fn scenario(
    name: &'static str,
    mode: BuildMode,
    setup: fn(&Fixture) -> BuildRequest,
) -> Scenario {
    Scenario { name, mode, setup }
}

const SCENARIOS: &[Scenario] = &[
    scenario("hvm", BuildMode::Hvm, hvm_everything),
    scenario("hvm-pod", BuildMode::Hvm, hvm_pod),
    scenario("hvm-devices-pnode", BuildMode::Hvm, hvm_devices),
    scenario("pvh", BuildMode::Pvh, pvh_modules),
    scenario("pvh-pod-pnode", BuildMode::Pvh, pvh_pod),
    scenario("pv", BuildMode::Pv, pv_ramdisk),
    scenario("pv-pnode", BuildMode::Pv, pv_pnode),
];

const HOST: &str = "nodes=2,node_mib=4096,cpus=8";

/// xenopsd's claim for the build, made before the builder runs.
fn claim(fx: &Fixture, domid: DomId, mib: u64) {
    fx.host.domain_claim_pages(domid, mib << 8).unwrap();
}

/// Full memory, OVMF, two vCPUs with affinity, scheduler, TSC, time offset, viridian, x87.
fn hvm_everything(fx: &Fixture) -> BuildRequest {
    std::fs::write(&fx.paths.ovmf, vec![0xa5; 9000]).unwrap();
    let domid = fx.domain(
        2048,
        &[
            ("platform/vcpu/number", "2"),
            ("platform/vcpu/current", "2"),
            ("platform/vcpu/0/affinity", "0110"),
            ("platform/vcpu/1/affinity", "00000001"),
            ("platform/vcpu/weight", "512"),
            ("platform/vcpu/cap", "50"),
            ("platform/tsc_mode", "2"),
            ("platform/timeoffset", "-3600"),
            ("platform/viridian", "1"),
            ("platform/viridian_time_ref_count", "1"),
            ("platform/x87-fip-width", "4"),
            ("hvmloader/bios", "ovmf"),
        ],
    );
    claim(fx, domid, 2048);
    request(domid, 2048, 2048)
}

/// Populate-on-demand: start below max.
fn hvm_pod(fx: &Fixture) -> BuildRequest {
    let domid = fx.domain(2048, &[("platform/hpet", "0")]);
    claim(fx, domid, 1024);
    request(domid, 2048, 1024)
}

/// A vGPU, a passthrough device with BARs and an RMRR, memory from one node only.
fn hvm_devices(fx: &Fixture) -> BuildRequest {
    let gpu = PciSbdf {
        seg: 0,
        bus: 3,
        dev: 0,
        func: 0,
    };
    fx.pci_device("0000:03:00.0", &[256 << 20, 16 << 20], 0x10de, 0x1db4);
    fx.host.add_rmrr(
        gpu,
        ReservedRange {
            start_pfn: 0xC0000,
            nr_pages: 0x10,
        },
    );
    let domid = fx.domain(2048, &[("platform/viridian_reference_tsc", "1")]);
    claim(fx, domid, 2048);
    let mut req = request(domid, 2048, 2048);
    req.vgpu = true;
    req.pci_passthrough = vec![gpu];
    req.mem_pnode = Some(1);
    req
}

const PVH_ENTRY: u32 = 0x100_0040;

/// A PVH kernel (ELF64 with a `PHYS32_ENTRY` note), a command line and two modules.
fn pvh_modules(fx: &Fixture) -> BuildRequest {
    use xenguest::image::xen_notes;
    let domid = fx.domain(
        1024,
        &[
            ("platform/vcpu/number", "2"),
            ("platform/vcpu/current", "2"),
        ],
    );
    claim(fx, domid, 1024);
    let mut notes = common::elf_note(b"Xen", xen_notes::GUEST_OS, b"linux\0");
    notes.extend(common::elf_note(
        b"Xen",
        xen_notes::PHYS32_ENTRY,
        &PVH_ENTRY.to_le_bytes(),
    ));
    let code: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let kernel = common::pvh_kernel(true, 0x100_0000, &code, 0x3000, &notes);
    let mut req = BuildRequest::new(domid, 1024, 1024, fx.file("vmlinux", &kernel));
    req.cmdline = "console=hvc0".into();
    req.modules = (0..2)
        .map(|i| xenguest::request::Module {
            path: fx.file(&format!("module{i}"), &vec![i as u8; 5000 + 3000 * i]),
            cmdline: format!("module {i}"),
        })
        .collect();
    req
}

/// PVH with populate-on-demand and memory from one node.
fn pvh_pod(fx: &Fixture) -> BuildRequest {
    let mut req = pvh_modules(fx);
    fx.host.domain_claim_pages(req.domid, 0).unwrap();
    claim(fx, req.domid, 512);
    req.mem_start_mib = 512;
    req.mem_pnode = Some(1);
    req.modules.truncate(1);
    req
}

const PV_VIRT_BASE: u64 = 0xffff_ffff_8000_0000;
const PV_KSTART: u64 = PV_VIRT_BASE + 0x100_0000;

/// A 64-bit PV kernel with the Xen notes Linux carries: one `PT_LOAD` at physical 16 MiB.
fn pv_kernel() -> Vec<u8> {
    use xenguest::image::xen_notes as n;
    let c = |s: &str| [s.as_bytes(), b"\0"].concat();
    let mut notes = Vec::new();
    for (kind, desc) in [
        (n::GUEST_OS, c("linux")),
        (n::GUEST_VERSION, c("2.6")),
        (n::XEN_VERSION, c("xen-3.0")),
        (n::VIRT_BASE, PV_VIRT_BASE.to_le_bytes().to_vec()),
        (n::PADDR_OFFSET, 0u64.to_le_bytes().to_vec()),
        (n::ENTRY, (PV_KSTART + 0x40).to_le_bytes().to_vec()),
        (
            n::HYPERCALL_PAGE,
            (PV_KSTART + 0x2000).to_le_bytes().to_vec(),
        ),
        (n::FEATURES, c("!writable_page_tables|pae_pgdir_above_4gb")),
        (n::PAE_MODE, c("yes")),
        (n::LOADER, c("generic")),
    ] {
        notes.extend(common::elf_note(b"Xen", kind, &desc));
    }
    let code: Vec<u8> = (0..256 << 10)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let (data_at, len) = (0x1000u64, code.len() as u64);
    let mut v = vec![0u8; 64];
    v[..4].copy_from_slice(b"\x7fELF");
    v[4..7].copy_from_slice(&[2, 1, 1]);
    v[16..18].copy_from_slice(&2u16.to_le_bytes());
    v[18..20].copy_from_slice(&62u16.to_le_bytes());
    v[20..24].copy_from_slice(&1u32.to_le_bytes());
    v[24..32].copy_from_slice(&(PV_KSTART + 0x40).to_le_bytes());
    v[32..40].copy_from_slice(&64u64.to_le_bytes());
    v[52..54].copy_from_slice(&64u16.to_le_bytes());
    v[54..56].copy_from_slice(&56u16.to_le_bytes());
    v[56..58].copy_from_slice(&2u16.to_le_bytes());
    for (p_type, off, vaddr, paddr, filesz, memsz) in [
        (1u32, data_at, PV_KSTART, 0x100_0000, len, len + 0x4_0000),
        (
            4,
            data_at + len,
            0,
            0,
            notes.len() as u64,
            notes.len() as u64,
        ),
    ] {
        v.extend_from_slice(&p_type.to_le_bytes());
        v.extend_from_slice(&7u32.to_le_bytes());
        for x in [off, vaddr, paddr, filesz, memsz, 0x1000] {
            v.extend_from_slice(&x.to_le_bytes());
        }
    }
    v.resize(data_at as usize, 0);
    v.extend_from_slice(&code);
    v.extend_from_slice(&notes);
    v
}

/// A PV domain (created PV, as xenopsd does) with a kernel, a ramdisk and a command line.
fn pv_ramdisk(fx: &Fixture) -> BuildRequest {
    let domid = fx
        .host
        .create_domain(&DomainConfig::pv((512 << 10) + 1024, 2))
        .unwrap();
    for (k, v) in [
        ("platform/vcpu/number", "2"),
        ("platform/vcpu/current", "2"),
    ] {
        fx.store
            .write(&format!("{}/{k}", domain_path(domid)), v)
            .unwrap();
    }
    claim(fx, domid, 512);
    let mut req = BuildRequest::new(domid, 512, 512, fx.file("vmlinuz", &pv_kernel()));
    req.ramdisk = Some(fx.file("initrd", &vec![0x42; 300_000]));
    req.cmdline = "root=/dev/xvda1 console=hvc0".into();
    req.store_port = 7;
    req.console_port = 8;
    req
}

/// PV without a ramdisk, memory from one node.
fn pv_pnode(fx: &Fixture) -> BuildRequest {
    let mut req = pv_ramdisk(fx);
    req.ramdisk = None;
    req.mem_pnode = Some(0);
    req
}

fn run(fx: &Fixture, mode: BuildMode, req: &BuildRequest) -> xenguest::Result<BuildOutput> {
    let env = BuildEnv {
        hv: &fx.host,
        store: &fx.store,
        paths: &fx.paths,
    };
    builder::build(env, mode, req)
}

/// A scenario on a fresh fixture: the fixture, the request, and the free pages before the
/// domain existed.
fn prepare(s: &Scenario) -> (Fixture, BuildRequest, u64) {
    let fx = Fixture::new(HOST);
    let free = fx.host.free_pages();
    let req = (s.setup)(&fx);
    (fx, req, free)
}

/// After a build, whatever happened: no claim, and once the toolstack destroys the domain
/// every page is back and the host's books balance.
fn toolstack_cleans_up(fx: &Fixture, domid: DomId, free: u64, case: &str) {
    assert_eq!(fx.host.outstanding_claims(), 0, "{case}: claim left behind");
    fx.host.destroy_domain(domid).unwrap();
    assert_eq!(fx.host.free_pages(), free, "{case}: pages lost");
    if let Err(e) = fx.host.check_accounting() {
        panic!("{case}: {e}");
    }
}

fn build_or_panic(
    fx: &Fixture,
    s: &Scenario,
    req: &BuildRequest,
    case: &str,
) -> xenguest::Result<BuildOutput> {
    catch_unwind(AssertUnwindSafe(|| run(fx, s.mode, req)))
        .unwrap_or_else(|_| panic!("{case}: the build panicked"))
}

// ---------------------------------------------------------------------------------------
// Hypercall faults
// ---------------------------------------------------------------------------------------

/// What the C xenguest does when a call fails: carries on, or fails naming this step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The failure is logged and ignored (as in C).
    Tolerated,
    /// `xenguest: <step>: [errno] ...`.
    Fails(&'static str),
}

fn trace_field(t: &TraceEntry, name: &str) -> Option<u64> {
    t.detail.split_whitespace().find_map(|w| {
        let v = w.strip_prefix(name)?;
        match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => v.parse().ok(),
        }
    })
}

/// The step a failed call is reported under, from the C xenguest's and libxenguest's
/// structure: which function made the call and what it names in `failwith_oss_xc`.
/// `before` is the clean build's calls before this one (the phase of the build).
fn expected(mode: BuildMode, t: &TraceEntry, before: &[TraceEntry]) -> Expect {
    use Expect::*;
    let after = |kind: &str| before.iter().any(|b| b.kind == kind);
    let param = trace_field(t, "param=").map(|p| p as u32);
    // What every mode shares.
    match t.kind {
        "domain_getinfo" => return Fails("xc_domain_getinfo"),
        // The first: the memory check of the opening steps; then vCPU affinity's.
        "physinfo" if !after("physinfo") => return Fails(mode.name()),
        "physinfo" => return Fails("xc_cpumap_alloc"),
        "vcpu_setaffinity_hard" => return Fails("xc_vcpu_setaffinity"),
        "sched_credit_domain_get" => return Tolerated, // "scheduler not enabled?"
        "sched_credit_domain_set" => return Fails("xc_sched_credit_domain_set"),
        "domain_set_tsc_info" => return Fails("xc_domain_set_tsc_info"),
        "domain_set_memory_map" => return Fails("xc_domain_set_memory_map"),
        "domain_set_time_offset" => return Fails("xc_domain_set_time_offset"),
        "gnttab_seed" => return Fails("xc_dom_gnttab_init"),
        "get_cpu_featureset" | "cpuid_apply_policy" => return Fails("construct_cpuid_policy"),
        "domain_pages_by_node" => return Tolerated, // the report's placement query
        "hvm_param_set" => match param {
            Some(param::VIRIDIAN | param::HPET_ENABLED) => return Tolerated,
            Some(param::STORE_EVTCHN | param::CONSOLE_EVTCHN) => return Fails("xc_dom_boot_image"),
            Some(param::TRIPLE_FAULT_REASON | param::X87_FIP_WIDTH) => {
                return Fails("hvm_build_params")
            }
            _ => {}
        },
        "hvm_param_get" => return Fails("hvm_build_params"),
        "domain_hvm_set_boot_vcpu" => return Fails("xc_dom_boot_image"),
        _ => {}
    }
    match (mode, t.kind) {
        // HVM: the C xenguest's hvm_build_setup_mem around libxenguest's meminit_hvm.
        (
            BuildMode::Hvm,
            "reserved_device_memory_map" | "domain_set_pod_target" | "domain_claim_pages",
        ) => Fails("hvm_build_setup_mem"),
        (BuildMode::Hvm, "domain_populate_physmap") if !after("domain_claim_pages") => {
            Fails("hvm_build_setup_mem")
        }
        // The hvm_info page: cleared, then the table (bootlate_hvm).
        (BuildMode::Hvm, "write_guest")
            if matches!(trace_field(t, "paddr="), Some(0x9F000 | 0x9F800)) =>
        {
            Fails("xc_dom_boot_image")
        }
        // PVH: libxenguest's xc_dom_boot_mem_init, then xc_dom_build_image.
        (BuildMode::Pvh, "domain_set_pod_target" | "domain_claim_pages") => {
            Fails("xc_dom_boot_mem_init")
        }
        (BuildMode::Pvh, "domain_populate_physmap") if !after("domain_claim_pages") => {
            Fails("xc_dom_boot_mem_init")
        }
        // PV: meminit_pv, the image, then xc_dom_boot_image from the shared info on.
        (
            BuildMode::Pv,
            "domain_set_address_size" | "domain_claim_pages" | "domain_populate_physmap",
        ) => Fails("xc_dom_boot_mem_init"),
        (BuildMode::Pv, "write_guest" | "clear_domain_pages")
            if after("domain_shared_info_frame") =>
        {
            Fails("xc_dom_boot_image")
        }
        (
            BuildMode::Pv,
            "domain_shared_info_frame"
            | "hypercall_page_init"
            | "mmuext_pin_l4_table"
            | "vcpu_setcontext_pv",
        ) => Fails("xc_dom_boot_image"),
        (BuildMode::Pv, "get_native_protocol") => Fails("xc_domain_get_native_protocol"),
        // Images, special pages and their params, the identity table, ACPI (every mode).
        (_, "domain_populate_physmap" | "write_guest" | "clear_domain_pages" | "hvm_param_set") => {
            Fails("xc_dom_build_image")
        }
        (mode, other) => panic!("no expectation for {other} in {}: add one", mode.name()),
    }
}

/// The calls a clean build of `s` makes, in order (the toolstack's own calls excluded), and
/// the build's output.
fn clean_build(s: &Scenario) -> (Vec<TraceEntry>, BuildOutput) {
    let (fx, req, free) = prepare(s);
    // Calls for the domain plus the host-wide ones (physinfo, featuresets, RMRRs).
    let mark = fx.host.trace().len();
    let out = run(&fx, s.mode, &req).unwrap_or_else(|e| panic!("{}: clean build: {e}", s.name));
    let calls: Vec<TraceEntry> = fx.host.trace()[mark..].to_vec();
    toolstack_cleans_up(&fx, req.domid, free, s.name);
    (calls, out)
}

/// Each call with the nth (1-based) occurrence of its kind, for arming a fault on it, and
/// its expected outcome.
fn with_nth(mode: BuildMode, calls: &[TraceEntry]) -> Vec<(TraceEntry, u64, Expect)> {
    let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
    calls
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let n = seen.entry(t.kind).or_insert(0);
            *n += 1;
            (t.clone(), *n, expected(mode, t, &calls[..i]))
        })
        .collect()
}

fn c_text(step: &str, kind: &str, errno: i32) -> String {
    let function = xc_function(kind);
    let what = if step == function {
        strerror(errno)
    } else {
        format!("{function}: {}", strerror(errno))
    };
    format!("xenguest: {step}: [{errno}] {what}\n")
}

/// Every call of every scenario failed in turn with ENOMEM, EINVAL and EBUSY.
#[test]
fn every_hypercall_failed_in_turn() {
    let mut cases = 0;
    let mut tolerated = 0;
    for s in SCENARIOS {
        let (calls, clean) = clean_build(s);
        let calls = with_nth(s.mode, &calls);
        assert!(calls.len() > 20, "{}: {} calls", s.name, calls.len());
        for (call, nth, expect) in &calls {
            for errno in [libc::ENOMEM, libc::EINVAL, libc::EBUSY] {
                let case = format!(
                    "{}: {} #{nth} ({}) -> {errno}",
                    s.name, call.kind, call.detail
                );
                let (fx, req, free) = prepare(s);
                // Host-wide calls carry no domid: count them host-wide.
                let domid = call.domid.map(|_| req.domid);
                fx.host
                    .inject(Fault {
                        kind: call.kind,
                        nth: *nth,
                        domid,
                        action: FaultAction::Errno(errno),
                    })
                    .unwrap();
                let outcome = build_or_panic(&fx, s, &req, &case);
                assert!(
                    fx.host.pending_faults().is_empty(),
                    "{case}: the fault never fired"
                );
                match (expect, outcome) {
                    (Expect::Tolerated, Ok(out)) => {
                        assert_eq!(out.result, clean.result, "{case}");
                        tolerated += 1;
                    }
                    (Expect::Fails(step), Err(e)) => {
                        assert_eq!(e.wire_text(), c_text(step, call.kind, errno), "{case}");
                        assert_eq!((e.step().wire_name(), e.code()), (*step, errno), "{case}");
                    }
                    (want, got) => panic!("{case}: expected {want:?}, got {got:?}"),
                }
                toolstack_cleans_up(&fx, req.domid, free, &case);
                cases += 1;
            }
        }
    }
    eprintln!("every_hypercall_failed_in_turn: {cases} builds, {tolerated} tolerated failures");
}

/// Every `populate_physmap` of every scenario cut short: 0, 1, half and all but one of its
/// extents done. A superpage call falls back to smaller extents and the build succeeds with
/// the same RAM, no page populated twice; any other shortfall fails with ENOMEM under the
/// step's name (HVM: the out-of-memory error naming what is missing and the node, or
/// libxenguest's `_exact` failure for the special pages).
#[test]
fn every_populate_cut_short() {
    let mut cases = 0;
    let mut fell_back = 0;
    for s in SCENARIOS {
        let (calls, clean) = clean_build(s);
        let populates: Vec<_> = with_nth(s.mode, &calls)
            .into_iter()
            .filter(|(t, _, _)| t.kind == "domain_populate_physmap")
            .collect();
        assert!(!populates.is_empty(), "{}", s.name);
        for (call, nth, expect) in populates {
            let Expect::Fails(step) = expect else {
                panic!("{}: a populate failure tolerated?", s.name)
            };
            let asked = trace_field(&call, "extents=").unwrap() as usize;
            let order = trace_field(&call, "order=").unwrap() as u32;
            let special = trace_field(&call, "first=") == Some(xenguest::boot::IOREQ_SERVER_GFN.0);
            let mut dones = vec![0, 1, asked / 2, asked.saturating_sub(1)];
            dones.retain(|&d| d < asked);
            dones.dedup();
            for done in dones {
                let case = format!(
                    "{}: populate #{nth} ({}) stops after {done}",
                    s.name, call.detail
                );
                let (fx, req, free) = prepare(s);
                fx.host
                    .inject(Fault::partial(nth, done).for_domain(req.domid))
                    .unwrap();
                match build_or_panic(&fx, s, &req, &case) {
                    Ok(out) => {
                        assert!(order > 0, "{case}: a 4 KiB shortfall was ignored");
                        let snap = fx.host.domain_snapshot(req.domid).unwrap();
                        assert_eq!(snap.repopulated_pages, 0, "{case}");
                        let ram = &out.report.memory.ram;
                        assert_eq!(
                            ram.pages(),
                            clean.report.memory.ram.pages(),
                            "{case}: RAM lost"
                        );
                        assert!(ram.fallback_extents_by_order[&order] > 0, "{case}");
                        fell_back += 1;
                    }
                    Err(e) => {
                        assert_eq!(
                            (e.step().wire_name(), e.code()),
                            (step, libc::ENOMEM),
                            "{case}: {e}"
                        );
                        let text = e.wire_text();
                        assert!(
                            text.starts_with(&format!("xenguest: {step}: [12] ")),
                            "{case}: {text}"
                        );
                        assert_eq!(text.matches('\n').count(), 1, "{case}");
                        match (s.mode, &e.kind) {
                            (BuildMode::Hvm, _) if special => assert_eq!(
                                text,
                                format!(
                                    "xenguest: xc_dom_build_image: [12] xc_domain_populate_physmap_exact: \
                                     special pages: {done} of 16 populated\n"
                                ),
                                "{case}"
                            ),
                            (BuildMode::Hvm, ErrorKind::OutOfMemory { wanted_pages, populated_pages, node }) => {
                                assert_eq!(order, 0, "{case}: a superpage shortfall should fall back");
                                assert_eq!(*wanted_pages, clean.report.memory.ram.pages(), "{case}");
                                assert!(populated_pages < wanted_pages, "{case}");
                                assert_eq!(*node, req.mem_pnode, "{case}");
                            }
                            (BuildMode::Hvm, _) => panic!("{case}: {e:?}"),
                            _ => {}
                        }
                    }
                }
                toolstack_cleans_up(&fx, req.domid, free, &case);
                cases += 1;
            }
        }
    }
    eprintln!("every_populate_cut_short: {cases} builds, {fell_back} fell back and built");
}

// ---------------------------------------------------------------------------------------
// Store faults
// ---------------------------------------------------------------------------------------

/// The step a failed store operation is reported under.
fn store_step(mode: BuildMode, path: &str) -> &'static str {
    let key = path.splitn(5, '/').nth(4).unwrap_or("");
    match (mode, path, key) {
        (BuildMode::Pvh, "/mh/limits/pv-kernel-max_size" | "/mh/limits/pv-ramdisk-max_size", _) => {
            "get_image_max_size"
        }
        (BuildMode::Pv, "/mh/limits/pv-kernel-max_size" | "/mh/limits/pv-ramdisk-max_size", _) => {
            "get_image_max_size"
        }
        (_, _, "hvmloader/bios" | "platform/ovmf-override") => "hvm_load_firmware_module",
        (_, _, k) if k.starts_with("vm-data/") => "hvm_build_setup_mem",
        (_, _, k) if k.starts_with("platform/") => "get_flags",
        _ => panic!(
            "no expectation for a store failure at {path} in {}",
            mode.name()
        ),
    }
}

/// Every store operation of every scenario failed in turn (EIO, EACCES, EAGAIN): the build
/// fails naming the step, the operation and the path; nothing is tolerated silently.
#[test]
fn every_store_operation_failed_in_turn() {
    let mut cases = 0;
    for s in SCENARIOS {
        let (fx, req, free) = prepare(s);
        let before = fx.store.ops();
        run(&fx, s.mode, &req).unwrap();
        let ops = fx.store.ops() - before;
        assert!(ops > 20, "{}: {ops} store operations", s.name);
        toolstack_cleans_up(&fx, req.domid, free, s.name);
        for nth in 1..=ops {
            for errno in [libc::EIO, libc::EACCES, libc::EAGAIN] {
                let case = format!("{}: store op #{nth} -> {errno}", s.name);
                let (fx, req, free) = prepare(s);
                fx.store.fail_nth(None, nth, errno);
                let e = build_or_panic(&fx, s, &req, &case)
                    .err()
                    .unwrap_or_else(|| panic!("{case}: a store failure was ignored"));
                let (step, ErrorKind::Store(source)) = (e.step, &e.kind) else {
                    panic!("{case}: {e:?}")
                };
                assert_eq!(step, store_step(s.mode, &source.path), "{case}: {e}");
                assert_eq!(
                    e.wire_text(),
                    format!(
                        "xenguest: {step}: [{errno}] xenstore {} {}: [{errno}] {}\n",
                        source.op,
                        source.path,
                        strerror(errno)
                    ),
                    "{case}"
                );
                toolstack_cleans_up(&fx, req.domid, free, &case);
                cases += 1;
            }
        }
    }
    eprintln!("every_store_operation_failed_in_turn: {cases} builds");
}

// ---------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------

const PARALLEL: usize = 64;

/// Run `PARALLEL` builds at once on `host`, each thread doing the toolstack's part too
/// (create, platform keys, optionally the claim); returns each domid and outcome. Fails
/// on a deadlock or a panic.
fn parallel_builds(
    host: &Arc<SimHost>,
    claim: bool,
    shape: fn(usize) -> (u64, u64, Option<u32>),
) -> Vec<(DomId, xenguest::Result<BuildOutput>)> {
    let dir = tempfile::tempdir().unwrap();
    let paths = HostPaths {
        ipxe: dir.path().join("ipxe.bin"),
        ovmf: dir.path().join("OVMF-release.fd"),
        seabios: dir.path().join("bios-256k.bin"),
        sysfs_pci_devices: dir.path().join("pci"),
    };
    std::fs::write(&paths.ipxe, common::ipxe_bytes()).unwrap();
    let store = Arc::new(MemoryStore::new());
    let barrier = Arc::new(Barrier::new(PARALLEL));
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..PARALLEL {
        let (host, store, paths, barrier, tx) = (
            host.clone(),
            store.clone(),
            paths.clone(),
            barrier.clone(),
            tx.clone(),
        );
        std::thread::spawn(move || {
            let (max, start, pnode) = shape(i);
            let domid = host
                .create_domain(&DomainConfig::hvm((max << 10) + 1024, 2))
                .unwrap();
            let base = domain_path(domid);
            store
                .write(&format!("{base}/platform/vcpu/number"), "2")
                .unwrap();
            store
                .write(&format!("{base}/platform/vcpu/current"), "2")
                .unwrap();
            if claim {
                // Refused when the host is short, as Xen refuses it; the build goes on.
                let _ = host.domain_claim_pages(domid, start << 8);
            }
            let mut req = request(domid, max, start);
            req.mem_pnode = pnode;
            barrier.wait();
            let env = BuildEnv {
                hv: &*host,
                store: &*store,
                paths: &paths,
            };
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                builder::build(env, BuildMode::Hvm, &req)
            }));
            let _ = tx.send((domid, outcome.map_err(|_| domid)));
        });
    }
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut results = Vec::new();
    while results.len() < PARALLEL {
        let left = deadline.saturating_duration_since(Instant::now());
        let (domid, outcome) = rx.recv_timeout(left).unwrap_or_else(|_| {
            panic!("deadlock? {} of {PARALLEL} builds finished", results.len())
        });
        let outcome = outcome.unwrap_or_else(|d| panic!("d{d}: the build panicked"));
        results.push((domid, outcome));
    }
    results
}

/// A build's report agrees with what the host saw for its domain: calls per kind, RAM
/// pages per order (from the populate trace lines), pages per node.
fn report_matches_trace(host: &SimHost, out: &BuildOutput) {
    let domid = out.report.domid;
    let trace = host.trace_for(domid);
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for t in &trace {
        *counts.entry(t.kind).or_default() += 1;
    }
    // The toolstack's claim before the build and the report's own placement query.
    *counts.get_mut("domain_claim_pages").unwrap() -= trace
        .iter()
        .take_while(|t| t.kind == "domain_claim_pages")
        .count() as u64;
    *counts.get_mut("domain_pages_by_node").unwrap() -= 1;
    counts.retain(|_, n| *n > 0);
    let mut reported = out.report.hypercalls.clone();
    for host_wide in [
        "physinfo",
        "get_cpu_featureset",
        "reserved_device_memory_map",
    ] {
        reported.remove(host_wide);
    }
    assert_eq!(reported, counts, "d{domid}: report vs trace");

    let populates: Vec<&TraceEntry> = trace
        .iter()
        .filter(|t| t.kind == "domain_populate_physmap")
        .collect();
    let mut by_order: BTreeMap<u32, u64> = BTreeMap::new();
    for t in &populates[..populates.len() - 1] {
        let (order, done) = checks::populate_detail(&t.detail);
        *by_order.entry(order).or_default() += done << order;
    }
    by_order.retain(|_, p| *p > 0);
    let mut ram = out.report.memory.ram.pages_by_order.clone();
    ram.retain(|_, p| *p > 0);
    assert_eq!(ram, by_order, "d{domid}: RAM report vs populate trace");
    let snap = host.domain_snapshot(domid).unwrap();
    assert_eq!(
        out.report.memory.pages_by_node.as_ref(),
        Some(&snap.pages_by_node)
    );
}

/// 1 GiB chunks free on the host.
fn free_1g_chunks(host: &SimHost) -> u64 {
    (0..host.spec().nodes)
        .map(|n| host.free_chunks_by_order(n)[18])
        .sum()
}

/// 64 claimed builds of 2 GiB at once, 36 free 1 GiB chunks for 64 wanting one each: no
/// deadlock, every build succeeds (the claims guarantee the memory), at most 36 get a
/// 1 GiB extent and the rest fall back, every report matches the trace, and the books
/// balance with all guests up and after all are destroyed.
#[test]
fn sixty_four_parallel_builds_contend_for_1g_chunks() {
    let host = Arc::new(
        SimHost::from_spec("nodes=4,node_mib=36864,cpus=16,no_1g=1,no_1g=2,no_1g=3").unwrap(),
    );
    let free = host.free_pages();
    let chunks = free_1g_chunks(&host);
    assert_eq!(chunks, 36);
    let started = Instant::now();
    // Claims are host-wide, not per node, so no -mem_pnode here (see the next test).
    let results = parallel_builds(&host, true, |i| match i % 4 {
        0 => (2048, 1024, None), // PoD
        _ => (2048, 2048, None),
    });
    let elapsed = started.elapsed();
    let mut got_1g = 0;
    let mut fell_back = 0;
    for (domid, outcome) in &results {
        let out = outcome.as_ref().unwrap_or_else(|e| panic!("d{domid}: {e}"));
        report_matches_trace(&host, out);
        if out.report.memory.pod_target_pages.is_some() {
            continue; // PoD extents are p2m entries, not chunks.
        }
        let ram = &out.report.memory.ram;
        got_1g += ram.pages_by_order.get(&18).copied().unwrap_or(0) >> 18;
        fell_back += ram.fallback_extents_by_order.get(&18).copied().unwrap_or(0);
        let snap = host.domain_snapshot(*domid).unwrap();
        let on_host = snap.ram_pages_by_order.get(&18).copied().unwrap_or(0);
        assert_eq!(
            on_host >> 18,
            ram.pages_by_order.get(&18).map_or(0, |p| p >> 18)
        );
    }
    assert!(
        got_1g <= chunks,
        "{got_1g} 1 GiB extents from {chunks} chunks"
    );
    assert_eq!(got_1g + fell_back, 48, "one 1 GiB extent per full guest");
    assert!(fell_back >= 48 - chunks, "{fell_back} fallbacks");
    assert_eq!(host.outstanding_claims(), 0);
    host.check_accounting().unwrap();
    let owned: u64 = host
        .domains()
        .iter()
        .map(|d| host.domain_snapshot(*d).unwrap().tot_pages)
        .sum();
    assert_eq!(host.free_pages() + owned, free, "every page accounted for");
    for d in host.domains() {
        host.destroy_domain(d).unwrap();
    }
    assert_eq!(host.free_pages(), free);
    host.check_accounting().unwrap();
    eprintln!("64 parallel builds in {elapsed:?}: {got_1g} 1 GiB extents, {fell_back} fell back");
}

/// 64 unclaimed builds of 2 GiB at once on a host with room for about 40: the late ones
/// fail with the out-of-memory error, nothing deadlocks, no page is lost.
#[test]
fn sixty_four_parallel_builds_on_an_oversubscribed_host() {
    let host = Arc::new(SimHost::from_spec("nodes=2,node_mib=40960,cpus=16,no_1g=1").unwrap());
    let free = host.free_pages();
    let results = parallel_builds(&host, false, |i| (2048, 2048, (i % 8 == 0).then_some(1)));
    let mut ok = 0;
    for (domid, outcome) in &results {
        match outcome {
            Ok(out) => {
                report_matches_trace(&host, out);
                ok += 1;
            }
            Err(Error {
                kind: ErrorKind::OutOfMemory { .. } | ErrorKind::NoRoom(_),
                ..
            }) => {}
            // Out of memory by the time of the special pages.
            Err(e) if e.wire_text().contains("special pages: ") => {}
            Err(e) => panic!("d{domid}: {e}"),
        }
    }
    assert!(ok > 20 && ok < 64, "{ok} of 64 built");
    assert_eq!(host.outstanding_claims(), 0);
    host.check_accounting().unwrap();
    for d in host.domains() {
        host.destroy_domain(d).unwrap();
    }
    assert_eq!(host.free_pages(), free);
    host.check_accounting().unwrap();
    eprintln!("oversubscribed: {ok} of 64 built, the rest out of memory");
}

// ---------------------------------------------------------------------------------------
// The store going away
// ---------------------------------------------------------------------------------------

/// A xenstored connection whose daemon is killed just before operation `kill_at` (0-based).
struct DyingStore {
    inner: XenstoredStore,
    daemon: Mutex<xenstored::Xenstored>,
    ops: AtomicU64,
    kill_at: u64,
}

impl DyingStore {
    fn tick(&self) {
        if self.ops.fetch_add(1, Ordering::SeqCst) == self.kill_at {
            self.daemon.lock().unwrap().kill();
        }
    }
}

impl Store for DyingStore {
    fn read(&self, path: &str) -> StoreResult<Option<String>> {
        self.tick();
        self.inner.read(path)
    }
    fn write(&self, path: &str, value: &str) -> StoreResult<()> {
        self.tick();
        self.inner.write(path, value)
    }
    fn directory(&self, path: &str) -> StoreResult<Vec<String>> {
        self.tick();
        self.inner.directory(path)
    }
    fn rm(&self, path: &str) -> StoreResult<()> {
        self.tick();
        self.inner.rm(path)
    }
}

/// The real xenstored killed before each store operation of a build in turn: the build
/// fails within seconds with a store error naming the step, operation and path, leaves no
/// claim, and the domain can be destroyed with every page back.
#[test]
fn xenstored_killed_mid_build_is_a_clear_error_not_a_hang() {
    let fx = Fixture::new(HOST);
    let mut kill_at = 0;
    let mut total = None;
    let mut cases = 0;
    while total.is_none_or(|t| kill_at < t) {
        // Only this test uses XENSTORED_PATH; xenstored itself would obey a stale one.
        std::env::remove_var("XENSTORED_PATH");
        let daemon = xenstored::Xenstored::start("1");
        std::env::set_var("XENSTORED_PATH", daemon.socket());
        let host = SimHost::from_spec(HOST).unwrap();
        let free = host.free_pages();
        let domid = host
            .create_domain(&DomainConfig::hvm((1024 << 10) + 1024, 2))
            .unwrap();
        let setup = XenstoredStore::open().expect("connect to xenstored");
        let base = domain_path(domid);
        for (k, v) in [
            ("platform/vcpu/number", "2"),
            ("platform/vcpu/current", "1"),
            ("platform/viridian", "1"),
        ] {
            setup.write(&format!("{base}/{k}"), v).unwrap();
        }
        host.domain_claim_pages(domid, 1024 << 8).unwrap();
        let store = Arc::new(DyingStore {
            inner: XenstoredStore::open().unwrap(),
            daemon: Mutex::new(daemon),
            ops: AtomicU64::new(0),
            kill_at: if total.is_some() { kill_at } else { u64::MAX },
        });
        let host = Arc::new(host);
        let paths = fx.paths.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let (host, store) = (host.clone(), store.clone());
            std::thread::spawn(move || {
                let env = BuildEnv {
                    hv: &*host,
                    store: &*store,
                    paths: &paths,
                };
                let _ = tx.send(builder::build(
                    env,
                    BuildMode::Hvm,
                    &request(domid, 1024, 1024),
                ));
            });
        }
        let started = Instant::now();
        let outcome = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("kill before op {kill_at}: the build hangs"));
        let case = format!("xenstored killed before store op {kill_at}");
        match total {
            None => {
                // The clean run counts the operations.
                outcome.unwrap_or_else(|e| panic!("clean build against xenstored: {e}"));
                total = Some(store.ops.load(Ordering::SeqCst));
                assert!(total > Some(30), "{total:?} store operations");
            }
            Some(_) => {
                assert!(started.elapsed() < Duration::from_secs(5), "{case}: slow");
                let e = outcome
                    .err()
                    .unwrap_or_else(|| panic!("{case}: the build succeeded"));
                let ErrorKind::Store(source) = &e.kind else {
                    panic!("{case}: {e:?}")
                };
                let text = e.wire_text();
                assert!(
                    text.contains(&source.path) && text.contains(source.op),
                    "{case}: {text}"
                );
                assert!(
                    text.contains("xenstored closed the connection"),
                    "{case}: not a clear text: {text}"
                );
                assert_eq!(host.outstanding_claims(), 0, "{case}");
                kill_at += 1;
                cases += 1;
            }
        }
        host.destroy_domain(domid).unwrap();
        assert_eq!(host.free_pages(), free);
        host.check_accounting().unwrap();
    }
    eprintln!("xenstored killed at each of {cases} store operations");
}

// ---------------------------------------------------------------------------------------
// The fuzz checks on stable: regression inputs and a randomized pass
// ---------------------------------------------------------------------------------------

/// Every input kept in `fuzz/regressions/<target>/` (crashes the fuzzers found) and
/// `fuzz/seeds/<target>/` (the corpus seeds) passes its check.
#[test]
fn fuzz_regressions_and_seeds_replay() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = BTreeMap::new();
    for kind in ["regressions", "seeds"] {
        for (name, check) in checks::TARGETS {
            let Ok(dir) = std::fs::read_dir(root.join(kind).join(name)) else {
                continue;
            };
            for entry in dir {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                catch_unwind(|| check(&data))
                    .unwrap_or_else(|_| panic!("{name}: {} fails", path.display()));
                *replayed.entry(kind).or_insert(0) += 1;
            }
        }
    }
    assert!(replayed["regressions"] >= 4, "{replayed:?}");
    eprintln!("fuzz_regressions_and_seeds_replay: {replayed:?}");
}

/// A small deterministic generator (SplitMix64), so a failure is reproducible by seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Random bytes biased towards what the checks parse: digits, hex, separators, spaces.
    fn input(&mut self, max_len: usize) -> Vec<u8> {
        const ALPHABET: &[u8] = b"0123456789abcdefxX-: ,.\n\t+1";
        let len = (self.next() as usize) % (max_len + 1);
        (0..len)
            .map(|_| {
                let r = self.next();
                if r.is_multiple_of(3) {
                    ALPHABET[(r >> 8) as usize % ALPHABET.len()]
                } else {
                    (r >> 16) as u8
                }
            })
            .collect()
    }
}

/// Each check over random inputs (`ROBUSTNESS_CASES` per target, default 300; a whole
/// build is costlier, so it gets a tenth).
#[test]
fn fuzz_checks_randomized() {
    let per_target: u64 = std::env::var("ROBUSTNESS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    for (i, (name, check)) in checks::TARGETS.iter().enumerate() {
        let cases = if *name == "hvm_build" {
            per_target / 10
        } else {
            per_target
        };
        for case in 0..cases {
            let seed = (i as u64) << 32 | case;
            let data = SplitMix(seed).input(512);
            catch_unwind(|| check(&data))
                .unwrap_or_else(|_| panic!("{name}: seed {seed:#x} input {data:?}"));
        }
    }
}
