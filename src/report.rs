//! What a build did, for people and tests: the layout, pages per order and node, calls per
//! kind, xenstore writes, the result and the time taken. The counting and recording
//! wrappers sit on the seams, so the report is the same for the real and simulated host.

use crate::hypervisor::{
    CpuidLeaf, CpuidPolicy, DomainInfo, FeaturesetKind, HvmBootVcpu, Hypervisor, MemFlags,
    MsrEntry, PciSbdf, PhysInfo, PodInfo, PvVcpuContext, ReservedRange, SchedCredit, TscInfo,
    XcError, XcResult,
};
use crate::layout::HvmLayout;
use crate::memory::PopulateStats;
use crate::store::{Store, StoreError, StoreResult};
use crate::types::{DomId, E820Entry, MapAddr, MapFrame, Mfn};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The numbers a build hands back (`result:` line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildResult {
    /// Xenstore ring: a gfn for HVM/PVH, an MFN for PV.
    pub store_mfn: u64,
    /// Console ring, likewise.
    pub console_mfn: u64,
    /// PV only: the guest ABI (`x86_64-abi`).
    pub protocol: Option<String>,
}

impl BuildResult {
    /// The text after `result:` on the control fd (without the newline).
    pub fn wire_text(&self) -> String {
        match &self.protocol {
            Some(p) => format!("{} {} {p}", self.store_mfn, self.console_mfn),
            None => format!("{} {}", self.store_mfn, self.console_mfn),
        }
    }
}

/// Guest memory as built.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryReport {
    /// Populate-on-demand target, pages, when start < max.
    pub pod_target_pages: Option<u64>,
    /// The node asked for exactly (`-mem_pnode`).
    pub exact_node: Option<u32>,
    /// RAM population: pages and calls per order, fallbacks.
    pub ram: PopulateStats,
    /// Pages the domain owns per node, when the hypervisor can tell.
    pub pages_by_node: Option<Vec<u64>>,
}

/// Everything a build reports.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// `hvm_build`, `pvh_build` or `linux_build`.
    pub mode: &'static str,
    /// Domain built.
    pub domid: DomId,
    /// HVM/PVH layout (e820 and MMIO hole).
    pub layout: Option<HvmLayout>,
    /// Memory population.
    pub memory: MemoryReport,
    /// Hypervisor calls made, per kind (one libxenctrl call each).
    pub hypercalls: BTreeMap<&'static str, u64>,
    /// xenstore writes, in order.
    pub xenstore_writes: Vec<(String, String)>,
    /// The result.
    pub result: Option<BuildResult>,
    /// Where the build's wall time went.
    pub time: TimeSplit,
}

/// Where a build's wall time went, microseconds. The seams' share is measured around each
/// call by [`Counting`] and [`Recording`]; `own_us` is the rest: the builder's own work
/// (argument and key parsing, planning, page tables, ACPI tables, logging).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TimeSplit {
    /// Wall-clock time of the build.
    pub elapsed_us: u64,
    /// Inside hypervisor calls (the libxenctrl call, or the simulator's model of it).
    pub hypervisor_us: u64,
    /// Inside xenstore operations.
    pub xenstore_us: u64,
    /// Reading, unpacking and parsing images (kernel, firmware, modules), outside the seams;
    /// a kernel found in the cache costs its file check only.
    pub images_us: u64,
    /// Everything else.
    pub own_us: u64,
}

impl TimeSplit {
    /// The split of `elapsed`; the parts measured are disjoint, so `own_us` is what remains.
    pub fn of(
        elapsed: Duration,
        hypervisor: Duration,
        xenstore: Duration,
        images: Duration,
    ) -> Self {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let own = elapsed.saturating_sub(hypervisor + xenstore + images);
        TimeSplit {
            elapsed_us: us(elapsed),
            hypervisor_us: us(hypervisor),
            xenstore_us: us(xenstore),
            images_us: us(images),
            own_us: us(own),
        }
    }
}

impl std::fmt::Display for TimeSplit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "hypervisor {} us, xenstore {} us, images {} us, own {} us",
            self.hypervisor_us, self.xenstore_us, self.images_us, self.own_us
        )
    }
}

impl BuildReport {
    /// All hypervisor calls.
    pub fn total_hypercalls(&self) -> u64 {
        self.hypercalls.values().sum()
    }

    /// A few lines for a person.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "{} of domain {}", self.mode, self.domid);
        if let Some(r) = &self.result {
            let _ = writeln!(s, "  result         {}", r.wire_text());
        }
        if let Some(l) = &self.layout {
            let _ = writeln!(
                s,
                "  MMIO hole      {} MiB at {:#x}",
                l.mmio_size >> 20,
                l.mmio_start
            );
            for e in &l.e820 {
                let _ = writeln!(s, "  e820           {e}");
            }
        }
        let ram = &self.memory.ram;
        let pages: Vec<String> = ram
            .pages_by_order
            .iter()
            .rev()
            .map(|(order, pages)| format!("{} x {}", pages >> order, order_name(*order)))
            .collect();
        let mib = ram.pages() as f64 / 256.0;
        let _ = writeln!(
            s,
            "  guest RAM      {} ({mib:.1} MiB) in {} populate calls",
            pages.join(", "),
            ram.calls()
        );
        if let Some(target) = self.memory.pod_target_pages {
            let _ = writeln!(s, "  PoD target     {target} pages");
        }
        if let Some(node) = self.memory.exact_node {
            let _ = writeln!(s, "  exact node     {node}");
        }
        if let Some(nodes) = &self.memory.pages_by_node {
            let per: Vec<String> = nodes
                .iter()
                .enumerate()
                .map(|(n, p)| format!("node{n} {:.1} MiB", *p as f64 / 256.0))
                .collect();
            let _ = writeln!(s, "  placement      {}", per.join(", "));
        }
        let calls: Vec<String> = self
            .hypercalls
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            s,
            "  hypercalls     {} in all: {}",
            self.total_hypercalls(),
            calls.join(", ")
        );
        let writes: Vec<String> = self
            .xenstore_writes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(s, "  xenstore       {}", writes.join(" "));
        let _ = writeln!(
            s,
            "  elapsed        {:.3} ms: {}",
            self.time.elapsed_us as f64 / 1000.0,
            self.time
        );
        s
    }
}

fn order_name(order: u32) -> String {
    match order {
        18 => "1 GiB".into(),
        9 => "2 MiB".into(),
        0 => "4 KiB".into(),
        o => format!("order-{o}"),
    }
}

/// A [`Hypervisor`] that counts the calls made through it.
pub struct Counting<'a> {
    inner: &'a dyn Hypervisor,
    counts: Mutex<BTreeMap<&'static str, u64>>,
    /// Nanoseconds spent inside the calls.
    busy_ns: AtomicU64,
}

/// Run `f`, adding the time it took to `busy_ns`.
fn timed<T>(busy_ns: &AtomicU64, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let value = f();
    let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    busy_ns.fetch_add(ns, Ordering::Relaxed);
    value
}

impl<'a> Counting<'a> {
    /// Count calls to `inner`.
    pub fn new(inner: &'a dyn Hypervisor) -> Self {
        Counting {
            inner,
            counts: Mutex::new(BTreeMap::new()),
            busy_ns: AtomicU64::new(0),
        }
    }

    /// Calls so far, per kind.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Time spent inside the calls so far.
    pub fn busy(&self) -> Duration {
        Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed))
    }

    /// Make a call of `kind` on the inner hypervisor, counted and timed, or refuse it with
    /// ECANCELED once the build has been cancelled: every hypervisor call is a check point
    /// (see [`crate::cancel`]).
    fn call<T>(
        &self,
        kind: &'static str,
        f: impl FnOnce(&dyn Hypervisor) -> XcResult<T>,
    ) -> XcResult<T> {
        if crate::cancel::requested() {
            return Err(XcError::errno_with(
                kind,
                libc::ECANCELED,
                "build cancelled",
            ));
        }
        *self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .or_insert(0) += 1;
        timed(&self.busy_ns, || f(self.inner))
    }
}

impl Hypervisor for Counting<'_> {
    fn domain_getinfo(&self, domid: DomId) -> XcResult<DomainInfo> {
        self.call("domain_getinfo", |h| h.domain_getinfo(domid))
    }
    fn physinfo(&self) -> XcResult<PhysInfo> {
        self.call("physinfo", |h| h.physinfo())
    }
    fn vcpu_setaffinity_hard(&self, domid: DomId, vcpu: u32, hard: &[bool]) -> XcResult<()> {
        self.call("vcpu_setaffinity_hard", |h| {
            h.vcpu_setaffinity_hard(domid, vcpu, hard)
        })
    }
    fn sched_credit_domain_get(&self, domid: DomId) -> XcResult<SchedCredit> {
        self.call("sched_credit_domain_get", |h| {
            h.sched_credit_domain_get(domid)
        })
    }
    fn sched_credit_domain_set(&self, domid: DomId, params: SchedCredit) -> XcResult<()> {
        self.call("sched_credit_domain_set", |h| {
            h.sched_credit_domain_set(domid, params)
        })
    }
    fn domain_set_tsc_info(&self, domid: DomId, tsc_mode: u32) -> XcResult<()> {
        self.call("domain_set_tsc_info", |h| {
            h.domain_set_tsc_info(domid, tsc_mode)
        })
    }
    fn domain_claim_pages(&self, domid: DomId, nr_pages: u64) -> XcResult<()> {
        self.call("domain_claim_pages", |h| {
            h.domain_claim_pages(domid, nr_pages)
        })
    }
    fn domain_set_pod_target(&self, domid: DomId, target_pages: u64) -> XcResult<PodInfo> {
        self.call("domain_set_pod_target", |h| {
            h.domain_set_pod_target(domid, target_pages)
        })
    }
    fn domain_populate_physmap(
        &self,
        domid: DomId,
        order: u32,
        flags: MemFlags,
        extents: &mut [u64],
    ) -> XcResult<usize> {
        self.call("domain_populate_physmap", |h| {
            h.domain_populate_physmap(domid, order, flags, extents)
        })
    }
    fn clear_domain_pages(&self, domid: DomId, first: MapFrame, nr_pages: u64) -> XcResult<()> {
        self.call("clear_domain_pages", |h| {
            h.clear_domain_pages(domid, first, nr_pages)
        })
    }
    fn write_guest(&self, domid: DomId, at: MapAddr, data: &[u8]) -> XcResult<()> {
        self.call("write_guest", |h| h.write_guest(domid, at, data))
    }
    fn read_guest(&self, domid: DomId, at: MapAddr, buf: &mut [u8]) -> XcResult<()> {
        self.call("read_guest", |h| h.read_guest(domid, at, buf))
    }
    fn hvm_param_set(&self, domid: DomId, param: u32, value: u64) -> XcResult<()> {
        self.call("hvm_param_set", |h| h.hvm_param_set(domid, param, value))
    }
    fn hvm_param_get(&self, domid: DomId, param: u32) -> XcResult<u64> {
        self.call("hvm_param_get", |h| h.hvm_param_get(domid, param))
    }
    fn domain_set_memory_map(&self, domid: DomId, e820: &[E820Entry]) -> XcResult<()> {
        self.call("domain_set_memory_map", |h| {
            h.domain_set_memory_map(domid, e820)
        })
    }
    fn domain_set_time_offset(&self, domid: DomId, offset_s: i32) -> XcResult<()> {
        self.call("domain_set_time_offset", |h| {
            h.domain_set_time_offset(domid, offset_s)
        })
    }
    fn get_cpu_featureset(&self, kind: FeaturesetKind) -> XcResult<Vec<u32>> {
        self.call("get_cpu_featureset", |h| h.get_cpu_featureset(kind))
    }
    fn cpuid_apply_policy(&self, domid: DomId, policy: &CpuidPolicy) -> XcResult<()> {
        self.call("cpuid_apply_policy", |h| {
            h.cpuid_apply_policy(domid, policy)
        })
    }
    fn gnttab_seed(
        &self,
        domid: DomId,
        console: MapFrame,
        xenstore: MapFrame,
        console_domid: DomId,
        xenstore_domid: DomId,
    ) -> XcResult<()> {
        self.call("gnttab_seed", |h| {
            h.gnttab_seed(domid, console, xenstore, console_domid, xenstore_domid)
        })
    }
    fn domain_hvm_set_boot_vcpu(&self, domid: DomId, vcpu: &HvmBootVcpu) -> XcResult<()> {
        self.call("domain_hvm_set_boot_vcpu", |h| {
            h.domain_hvm_set_boot_vcpu(domid, vcpu)
        })
    }
    fn reserved_device_memory_map(&self, sbdf: PciSbdf) -> XcResult<Vec<ReservedRange>> {
        self.call("reserved_device_memory_map", |h| {
            h.reserved_device_memory_map(sbdf)
        })
    }
    fn domain_set_address_size(&self, domid: DomId, bits: u32) -> XcResult<()> {
        self.call("domain_set_address_size", |h| {
            h.domain_set_address_size(domid, bits)
        })
    }
    fn get_native_protocol(&self, domid: DomId) -> XcResult<String> {
        self.call("get_native_protocol", |h| h.get_native_protocol(domid))
    }
    fn domain_shared_info_frame(&self, domid: DomId) -> XcResult<Mfn> {
        self.call("domain_shared_info_frame", |h| {
            h.domain_shared_info_frame(domid)
        })
    }
    fn mmuext_pin_l4_table(&self, domid: DomId, l4: Mfn) -> XcResult<()> {
        self.call("mmuext_pin_l4_table", |h| h.mmuext_pin_l4_table(domid, l4))
    }
    fn hypercall_page_init(&self, domid: DomId, page: Mfn) -> XcResult<()> {
        self.call("hypercall_page_init", |h| {
            h.hypercall_page_init(domid, page)
        })
    }
    fn vcpu_setcontext_pv(&self, domid: DomId, vcpu: u32, ctx: &PvVcpuContext) -> XcResult<()> {
        self.call("vcpu_setcontext_pv", |h| {
            h.vcpu_setcontext_pv(domid, vcpu, ctx)
        })
    }
    fn domain_decrease_reservation(&self, domid: DomId, gfns: &[u64]) -> XcResult<usize> {
        self.call("domain_decrease_reservation", |h| {
            h.domain_decrease_reservation(domid, gfns)
        })
    }
    fn domain_get_tsc_info(&self, domid: DomId) -> XcResult<TscInfo> {
        self.call("domain_get_tsc_info", |h| h.domain_get_tsc_info(domid))
    }
    fn domain_restore_tsc_info(&self, domid: DomId, info: &TscInfo) -> XcResult<()> {
        self.call("domain_restore_tsc_info", |h| {
            h.domain_restore_tsc_info(domid, info)
        })
    }
    fn domain_hvm_getcontext(&self, domid: DomId) -> XcResult<Vec<u8>> {
        self.call("domain_hvm_getcontext", |h| h.domain_hvm_getcontext(domid))
    }
    fn domain_hvm_setcontext(&self, domid: DomId, context: &[u8]) -> XcResult<()> {
        self.call("domain_hvm_setcontext", |h| {
            h.domain_hvm_setcontext(domid, context)
        })
    }
    fn domain_set_cpu_policy(
        &self,
        domid: DomId,
        leaves: &[CpuidLeaf],
        msrs: &[MsrEntry],
    ) -> XcResult<()> {
        self.call("domain_set_cpu_policy", |h| {
            h.domain_set_cpu_policy(domid, leaves, msrs)
        })
    }
    fn domain_logdirty(&self, domid: DomId, enable: bool) -> XcResult<()> {
        self.call("domain_logdirty", |h| h.domain_logdirty(domid, enable))
    }
    fn domain_logdirty_clean(
        &self,
        domid: DomId,
        bitmap: &mut [u64],
        nr_pfns: u64,
    ) -> XcResult<u64> {
        self.call("domain_logdirty_clean", |h| {
            h.domain_logdirty_clean(domid, bitmap, nr_pfns)
        })
    }
    fn domain_pfn_types(&self, domid: DomId, pfns: &[u64]) -> XcResult<Vec<u32>> {
        self.call("domain_pfn_types", |h| h.domain_pfn_types(domid, pfns))
    }
    fn xen_version(&self) -> XcResult<(u32, u32)> {
        self.call("xen_version", |h| h.xen_version())
    }
    fn domain_get_cpu_policy(&self, domid: DomId) -> XcResult<(Vec<CpuidLeaf>, Vec<MsrEntry>)> {
        self.call("domain_get_cpu_policy", |h| h.domain_get_cpu_policy(domid))
    }
    fn domain_maximum_gpfn(&self, domid: DomId) -> XcResult<u64> {
        self.call("domain_maximum_gpfn", |h| h.domain_maximum_gpfn(domid))
    }
    fn domain_pages_by_node(&self, domid: DomId) -> XcResult<Vec<u64>> {
        // A query for the report, not part of the build: not counted.
        self.inner.domain_pages_by_node(domid)
    }
}

/// A [`Store`] that records the writes made through it.
pub struct Recording<'a> {
    inner: &'a dyn Store,
    writes: Mutex<Vec<(String, String)>>,
    /// Nanoseconds spent inside the operations.
    busy_ns: AtomicU64,
}

impl<'a> Recording<'a> {
    /// Record writes to `inner`.
    pub fn new(inner: &'a dyn Store) -> Self {
        Recording {
            inner,
            writes: Mutex::new(Vec::new()),
            busy_ns: AtomicU64::new(0),
        }
    }

    /// Time spent inside the operations so far.
    pub fn busy(&self) -> Duration {
        Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed))
    }

    /// Writes so far, in order.
    pub fn writes(&self) -> Vec<(String, String)> {
        self.writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Refuse a store operation once the build has been cancelled: like every hypervisor call,
/// every store operation is a check point (see [`crate::cancel`]).
fn store_checkpoint(op: &'static str, path: &str) -> StoreResult<()> {
    match crate::cancel::requested() {
        true => Err(StoreError {
            op,
            path: path.to_string(),
            code: libc::ECANCELED,
            message: "build cancelled".into(),
        }),
        false => Ok(()),
    }
}

impl Store for Recording<'_> {
    fn read(&self, path: &str) -> StoreResult<Option<String>> {
        store_checkpoint("read", path)?;
        timed(&self.busy_ns, || self.inner.read(path))
    }
    fn write(&self, path: &str, value: &str) -> StoreResult<()> {
        store_checkpoint("write", path)?;
        timed(&self.busy_ns, || self.inner.write(path, value))?;
        self.writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((path.to_string(), value.to_string()));
        Ok(())
    }
    fn directory(&self, path: &str) -> StoreResult<Vec<String>> {
        store_checkpoint("directory", path)?;
        timed(&self.busy_ns, || self.inner.directory(path))
    }
    fn rm(&self, path: &str) -> StoreResult<()> {
        store_checkpoint("rm", path)?;
        timed(&self.busy_ns, || self.inner.rm(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_split_own_is_the_rest() {
        let us = Duration::from_micros;
        let t = TimeSplit::of(us(1000), us(600), us(50), us(100));
        assert_eq!(
            (
                t.elapsed_us,
                t.hypervisor_us,
                t.xenstore_us,
                t.images_us,
                t.own_us
            ),
            (1000, 600, 50, 100, 250)
        );
        // Clocks read at different moments can overlap by a hair: never a negative rest.
        assert_eq!(TimeSplit::of(us(10), us(8), us(1), us(2)).own_us, 0);
    }

    #[test]
    fn counting_times_each_call() {
        let sim = crate::hypervisor::sim::SimHost::from_spec("nodes=1,node_mib=64").unwrap();
        sim.set_call_latency(Duration::from_millis(2));
        let hv = Counting::new(&sim);
        hv.physinfo().unwrap();
        hv.physinfo().unwrap();
        assert!(hv.busy() >= Duration::from_millis(4), "{:?}", hv.busy());
        assert_eq!(hv.counts().get("physinfo"), Some(&2));
    }
}
