//! `make bench`: hypercalls per HVM build against the libxenguest algorithm, our own cost per
//! build, and a boot storm, on the simulated host. Prints markdown sections for
//! BENCHMARKS.md. The libxenguest baseline below is a model of `meminit_hvm`'s loop
//! (xen-project/xen RELEASE-4.17.0, tools/libs/guest/xg_dom_x86.c): it lives here, not in
//! the product.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    reason = "statistics over small sample counts, and sizes printed in whole units"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use xenguest::builder::{self, BuildEnv, BuildMode, HostPaths};
use xenguest::hypervisor::sim::{DomainConfig, SimHost};
use xenguest::hypervisor::*;
use xenguest::layout::{self, HvmLayoutInput};
use xenguest::request::BuildRequest;
use xenguest::store::{domain_path, MemoryStore, Store};
use xenguest::types::{DomId, E820Entry, MapAddr, MapFrame};

const HVMLOADER: &str = "/usr/lib/xen-4.17/boot/hvmloader";

/// Counts heap bytes so a build's peak can be read.
struct CountingAlloc;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: delegates to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn paths() -> HostPaths {
    HostPaths::default()
}

fn new_domain(host: &SimHost, store: &MemoryStore, mem_mib: u64) -> DomId {
    let domid = host
        .create_domain(&DomainConfig::hvm((mem_mib << 10) + 1024, 2))
        .expect("create");
    let base = domain_path(domid);
    store
        .write(&format!("{base}/platform/vcpu/number"), "2")
        .unwrap();
    store
        .write(&format!("{base}/platform/vcpu/current"), "2")
        .unwrap();
    domid
}

fn our_build(host: &SimHost, mem_mib: u64) -> xenguest::report::BuildReport {
    let store = MemoryStore::new();
    let domid = new_domain(host, &store, mem_mib);
    let p = paths();
    let req = BuildRequest::new(domid, mem_mib, mem_mib, HVMLOADER);
    let out = builder::build(
        BuildEnv {
            hv: host,
            store: &store,
            paths: &p,
        },
        BuildMode::Hvm,
        &req,
    )
    .expect("build");
    host.destroy_domain(domid).unwrap();
    out.report
}

/// libxenguest 4.17 `meminit_hvm` + `alloc_magic_pages_hvm` populate calls, issued for real
/// against the simulated host. Returns (populate calls, pages by order).
fn libxenguest_model(host: &SimHost, mem_mib: u64) -> (u64, [u64; 3]) {
    const G: u64 = 1 << 18;
    const M: u64 = 1 << 9;
    let store = MemoryStore::new();
    let domid = new_domain(host, &store, mem_mib);
    let l = layout::plan_hvm(&HvmLayoutInput {
        mem_max_mib: mem_mib,
        ..Default::default()
    })
    .unwrap();
    let (hole_start, hole_end) = l.mmio_hole_pages();
    let flags = MemFlags::default();
    let mut calls = 0u64;
    let mut pages = [0u64; 3]; // 1G, 2M, 4K extents
    let mut populate = |order: u32, gfns: &mut Vec<u64>| -> usize {
        calls += 1;
        host.domain_populate_physmap(domid, order, flags, gfns)
            .unwrap()
    };
    let mut low: Vec<u64> = (0..0xA0).collect();
    assert_eq!(populate(0, &mut low), 0xA0);
    pages[2] += 0xA0;
    for (start, end) in l.ram_ranges_pages() {
        let mut cur = if start == 0 { 0xC0 } else { start };
        while cur < end {
            let mut count = (end - cur).min(G);
            if cur & (G - 1) != 0 && count > G - (cur & (G - 1)) {
                count = G - (cur & (G - 1));
            }
            let gib_ok = (count | cur) & (G - 1) == 0 && (cur + G <= hole_start || cur >= hole_end);
            if gib_ok && populate(18, &mut vec![cur]) > 0 {
                pages[0] += 1;
                cur += G;
                count = 0;
            }
            if count != 0 {
                count = count.min(4 * M);
                if cur & (M - 1) != 0 && count > (M - (cur & (M - 1))) {
                    count = M - (cur & (M - 1));
                } else if count & (M - 1) != 0 && count > M {
                    count &= !(M - 1);
                }
                if (count | cur) & (M - 1) == 0 {
                    let mut sp: Vec<u64> = (0..count / M).map(|i| cur + i * M).collect();
                    let done = populate(9, &mut sp) as u64;
                    pages[1] += done;
                    cur += done * M;
                    count -= done * M;
                }
            }
            if count != 0 {
                let mut small: Vec<u64> = (cur..cur + count).collect();
                assert_eq!(populate(0, &mut small) as u64, count, "4K shortfall");
                pages[2] += count;
                cur += count;
            }
        }
    }
    for first in [0xFEFF8u64, 0xFEFF0] {
        populate(0, &mut (first..first + 8).collect());
    }
    host.destroy_domain(domid).unwrap();
    (calls, pages)
}

fn hypercall_table(out: &mut String) {
    out.push_str("## 1. Populate calls per HVM build: ours vs the libxenguest algorithm\n\n");
    out.push_str(
        "Measured by `make bench` (`cargo bench --bench builds`): each guest is built on a fresh simulated \
         2-node host (`nodes=2,node_mib=163840` plus the fragmentation keys shown), once by our `hvm_build` \
         and once by a model of libxenguest 4.17's `meminit_hvm` + `alloc_magic_pages_hvm` that issues the \
         same calls against the same host. `populate_physmap` calls are counted by the simulated host's \
         trace; RAM + special pages, max = start (no PoD). The ABI minimum is one call per extent order in \
         the final page mix (the gfn array need not be contiguous), plus one for the special pages, \
         which carry different flags when RAM is PoD or node-bound.\n\n",
    );
    out.push_str("| guest | host memory | libxenguest calls | our calls | ABI minimum | libxenguest / ours | pages 1G / 2M / 4K (ours) |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    let scenarios = [
        ("plentiful", ""),
        ("no free 1 GiB chunk", ",no_1g=0,no_1g=1"),
        (
            "no 1 GiB, half the 2 MiB chunks gone",
            ",half_2m=0,half_2m=1",
        ),
    ];
    for (name, frag) in scenarios {
        for gib in [1u64, 4, 16, 64, 256] {
            let spec = format!("nodes=2,node_mib=163840{frag}");
            let (c_calls, c_pages) =
                libxenguest_model(&SimHost::from_spec(&spec).unwrap(), gib << 10);
            let host = SimHost::from_spec(&spec).unwrap();
            let report = our_build(&host, gib << 10);
            let ours = report.hypercalls["domain_populate_physmap"];
            let by_order = &report.memory.ram.pages_by_order;
            let n = |o: u32| by_order.get(&o).copied().unwrap_or(0) >> o;
            let orders_used = by_order.values().filter(|p| **p > 0).count() as u64;
            assert_eq!(
                (n(18), n(9), n(0)),
                (c_pages[0], c_pages[1], c_pages[2]),
                "same pages at the same orders"
            );
            out.push_str(&format!(
                "| {gib} GiB | {name} | {c_calls} | {ours} | {} | {:.0}x | {} / {} / {} |\n",
                orders_used + 1,
                c_calls as f64 / ours as f64,
                n(18),
                n(9),
                n(0)
            ));
        }
    }
    out.push('\n');
}

/// A hypervisor wrapper that adds up the time spent inside the simulated host.
struct Timed<'a> {
    inner: &'a SimHost,
    nanos: AtomicUsize,
}

macro_rules! timed {
    ($self:ident, $call:expr) => {{
        let t = Instant::now();
        let r = $call;
        $self
            .nanos
            .fetch_add(t.elapsed().as_nanos() as usize, Ordering::Relaxed);
        r
    }};
}

impl Hypervisor for Timed<'_> {
    fn domain_getinfo(&self, d: DomId) -> XcResult<DomainInfo> {
        timed!(self, self.inner.domain_getinfo(d))
    }
    fn physinfo(&self) -> XcResult<PhysInfo> {
        timed!(self, self.inner.physinfo())
    }
    fn vcpu_setaffinity_hard(&self, d: DomId, v: u32, h: &[bool]) -> XcResult<()> {
        timed!(self, self.inner.vcpu_setaffinity_hard(d, v, h))
    }
    fn sched_credit_domain_get(&self, d: DomId) -> XcResult<SchedCredit> {
        timed!(self, self.inner.sched_credit_domain_get(d))
    }
    fn sched_credit_domain_set(&self, d: DomId, p: SchedCredit) -> XcResult<()> {
        timed!(self, self.inner.sched_credit_domain_set(d, p))
    }
    fn domain_set_tsc_info(&self, d: DomId, m: u32) -> XcResult<()> {
        timed!(self, self.inner.domain_set_tsc_info(d, m))
    }
    fn domain_claim_pages(&self, d: DomId, n: u64) -> XcResult<()> {
        timed!(self, self.inner.domain_claim_pages(d, n))
    }
    fn domain_set_pod_target(&self, d: DomId, t: u64) -> XcResult<PodInfo> {
        timed!(self, self.inner.domain_set_pod_target(d, t))
    }
    fn domain_populate_physmap(
        &self,
        d: DomId,
        o: u32,
        f: MemFlags,
        e: &mut [u64],
    ) -> XcResult<usize> {
        timed!(self, self.inner.domain_populate_physmap(d, o, f, e))
    }
    fn clear_domain_pages(&self, d: DomId, g: MapFrame, n: u64) -> XcResult<()> {
        timed!(self, self.inner.clear_domain_pages(d, g, n))
    }
    fn write_guest(&self, d: DomId, p: MapAddr, b: &[u8]) -> XcResult<()> {
        timed!(self, self.inner.write_guest(d, p, b))
    }
    fn read_guest(&self, d: DomId, p: MapAddr, b: &mut [u8]) -> XcResult<()> {
        timed!(self, self.inner.read_guest(d, p, b))
    }
    fn hvm_param_set(&self, d: DomId, p: u32, v: u64) -> XcResult<()> {
        timed!(self, self.inner.hvm_param_set(d, p, v))
    }
    fn hvm_param_get(&self, d: DomId, p: u32) -> XcResult<u64> {
        timed!(self, self.inner.hvm_param_get(d, p))
    }
    fn domain_set_memory_map(&self, d: DomId, e: &[E820Entry]) -> XcResult<()> {
        timed!(self, self.inner.domain_set_memory_map(d, e))
    }
    fn domain_set_time_offset(&self, d: DomId, o: i32) -> XcResult<()> {
        timed!(self, self.inner.domain_set_time_offset(d, o))
    }
    fn get_cpu_featureset(&self, k: FeaturesetKind) -> XcResult<Vec<u32>> {
        timed!(self, self.inner.get_cpu_featureset(k))
    }
    fn cpuid_apply_policy(&self, d: DomId, p: &CpuidPolicy) -> XcResult<()> {
        timed!(self, self.inner.cpuid_apply_policy(d, p))
    }
    fn gnttab_seed(
        &self,
        d: DomId,
        c: MapFrame,
        x: MapFrame,
        cd: DomId,
        xd: DomId,
    ) -> XcResult<()> {
        timed!(self, self.inner.gnttab_seed(d, c, x, cd, xd))
    }
    fn domain_hvm_set_boot_vcpu(&self, d: DomId, v: &HvmBootVcpu) -> XcResult<()> {
        timed!(self, self.inner.domain_hvm_set_boot_vcpu(d, v))
    }
    fn reserved_device_memory_map(&self, s: PciSbdf) -> XcResult<Vec<ReservedRange>> {
        timed!(self, self.inner.reserved_device_memory_map(s))
    }
    fn domain_pages_by_node(&self, d: DomId) -> XcResult<Vec<u64>> {
        timed!(self, self.inner.domain_pages_by_node(d))
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn cost_table(out: &mut String) {
    out.push_str("## 2. Our cost per build\n\n");
    out.push_str(
        "Median of 21 builds per size on a simulated 2-node host with plentiful memory (release build, \
         this 2-core machine). *Total* is the wall time of `builder::build`; *in the simulated host* is the \
         time spent inside hypervisor calls (measured by a timing wrapper on the seam); *ours* is the \
         difference: platform parsing, planning, image parsing and the builder's own bookkeeping. *Peak \
         heap* is the most heap in use during one build above what was in use before it (counting \
         allocator), and includes the simulated host's own state for the new domain. *Spawn* rows run the \
         `xenguest` binary as xenopsd does (fork/exec, median of 21).\n\n",
    );
    out.push_str("| what | total ms | in the simulated host ms | ours ms | ours per GiB ms | peak heap KiB |\n|---|---|---|---|---|---|\n");
    for gib in [1u64, 4, 16, 64] {
        let host = SimHost::from_spec("nodes=2,node_mib=163840").unwrap();
        let p = paths();
        let (mut totals, mut sims, mut peaks) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..21 {
            let store = MemoryStore::new();
            let domid = new_domain(&host, &store, gib << 10);
            let timed = Timed {
                inner: &host,
                nanos: AtomicUsize::new(0),
            };
            let req = BuildRequest::new(domid, gib << 10, gib << 10, HVMLOADER);
            let base = CURRENT.load(Ordering::Relaxed);
            PEAK.store(base, Ordering::Relaxed);
            let t = Instant::now();
            builder::build(
                BuildEnv {
                    hv: &timed,
                    store: &store,
                    paths: &p,
                },
                BuildMode::Hvm,
                &req,
            )
            .unwrap();
            totals.push(t.elapsed());
            peaks.push(PEAK.load(Ordering::Relaxed) - base);
            sims.push(Duration::from_nanos(
                timed.nanos.load(Ordering::Relaxed) as u64
            ));
            host.destroy_domain(domid).unwrap();
        }
        let ours: Vec<Duration> = totals
            .iter()
            .zip(&sims)
            .map(|(t, s)| t.saturating_sub(*s))
            .collect();
        let (total, sim, ours) = (
            median(&mut totals),
            median(&mut sims),
            median(&mut ours.clone()),
        );
        peaks.sort();
        out.push_str(&format!(
            "| in-process build, {gib} GiB | {} | {} | {} | {} | {} |\n",
            ms(total),
            ms(sim),
            ms(ours),
            ms(ours / gib as u32),
            peaks[peaks.len() / 2] / 1024
        ));
    }
    let exe = env!("CARGO_BIN_EXE_xenguest");
    let spawn = |args: &[&str]| {
        let mut v: Vec<Duration> = (0..21)
            .map(|_| {
                let t = Instant::now();
                let o = Command::new(exe).args(args).output().unwrap();
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                t.elapsed()
            })
            .collect();
        median(&mut v)
    };
    let supports = spawn(&["-supports", "migration-v2"]);
    out.push_str(&format!(
        "| spawn `xenguest -supports migration-v2` (process start + exit only) | {} | | | | |\n",
        ms(supports)
    ));
    let build = spawn(&sim_args("4096"));
    out.push_str(&format!("| spawn `xenguest -sim ... hvm_build`, 4 GiB (process + new simulated host + build) | {} | | | | |\n\n", ms(build)));
}

fn sim_args(mem: &str) -> Vec<&str> {
    vec![
        "-mode",
        "hvm_build",
        "-domid",
        "1",
        "-image",
        HVMLOADER,
        "-mem_max_mib",
        mem,
        "-mem_start_mib",
        mem,
        "-store_port",
        "1",
        "-console_port",
        "2",
        "-sim",
        "nodes=1,node_mib=5120",
    ]
}

fn storm_table(out: &mut String) {
    out.push_str("## 3. Boot storm\n\n");
    out.push_str(
        "N concurrent 4 GiB HVM builds (2 vCPUs each). *Threads*: N threads released together by a \
         barrier, all against one simulated host (`nodes=2,node_mib=262144`); afterwards every domain is \
         destroyed and the host's accounting checked exactly (free pages back to the start, lists \
         merged). *Processes*: N `xenguest -sim` processes started together, each on its own simulated \
         host (a simulated host lives in one process), i.e. the cost xenopsd pays per fork/exec under \
         load. Wall times on this 2-core machine; p50/p99 are per build.\n\n",
    );
    out.push_str("| N | threads total ms | threads p50 ms | threads p99 ms | accounting | processes total ms | processes p50 ms | processes p99 ms |\n|---|---|---|---|---|---|---|---|\n");
    let exe = env!("CARGO_BIN_EXE_xenguest");
    for n in [1usize, 2, 8, 32, 100] {
        let host = Arc::new(SimHost::from_spec("nodes=2,node_mib=262144").unwrap());
        let free = host.free_pages();
        let barrier = Arc::new(Barrier::new(n));
        let t = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (host, barrier) = (host.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let store = MemoryStore::new();
                    let domid = new_domain(&host, &store, 4096);
                    let p = paths();
                    let req = BuildRequest::new(domid, 4096, 4096, HVMLOADER);
                    barrier.wait();
                    let t = Instant::now();
                    builder::build(
                        BuildEnv {
                            hv: &*host,
                            store: &store,
                            paths: &p,
                        },
                        BuildMode::Hvm,
                        &req,
                    )
                    .unwrap();
                    (domid, t.elapsed())
                })
            })
            .collect();
        let results: Vec<(DomId, Duration)> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        let total = t.elapsed();
        let mut per: Vec<Duration> = results.iter().map(|r| r.1).collect();
        for (domid, _) in &results {
            host.destroy_domain(*domid).unwrap();
        }
        let exact = host.check_accounting().is_ok() && host.free_pages() == free;
        let (p50, p99) = (percentile(&mut per, 0.5), percentile(&mut per, 0.99));

        let args = sim_args("4096");
        let t = Instant::now();
        let children: Vec<_> = (0..n)
            .map(|_| {
                (
                    Instant::now(),
                    Command::new(exe)
                        .args(&args)
                        .stdout(std::process::Stdio::null())
                        .spawn()
                        .unwrap(),
                )
            })
            .collect();
        let mut per_proc: Vec<Duration> = children
            .into_iter()
            .map(|(start, mut c)| {
                assert!(c.wait().unwrap().success());
                start.elapsed()
            })
            .collect();
        let ptotal = t.elapsed();
        out.push_str(&format!(
            "| {n} | {} | {} | {} | {} | {} | {} | {} |\n",
            ms(total),
            ms(p50),
            ms(p99),
            if exact { "exact" } else { "MISMATCH" },
            ms(ptotal),
            ms(percentile(&mut per_proc, 0.5)),
            ms(percentile(&mut per_proc, 0.99))
        ));
    }
    out.push('\n');
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`
    }
    assert!(
        std::path::Path::new(HVMLOADER).exists(),
        "{HVMLOADER} missing: run `make deps`"
    );
    let mut out = String::new();
    out.push_str(&format!(
        "Machine: {} cores, `{}`. Generated by `make bench`.\n\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_string())
            )
            .unwrap_or_default()
    ));
    hypercall_table(&mut out);
    cost_table(&mut out);
    storm_table(&mut out);
    print!("{out}");
}
