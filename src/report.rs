//! What a build did, for people and tests: the layout, pages per order and node, calls per
//! kind, xenstore writes, the result and the time taken. The counting and recording
//! wrappers sit on the seams, so the report is the same for the real and simulated host.

use crate::hypervisor::{
    CpuidPolicy, DomainInfo, FeaturesetKind, HvmBootVcpu, Hypervisor, MemFlags, PciSbdf, PhysInfo,
    PodInfo, PvVcpuContext, ReservedRange, SchedCredit, XcError, XcResult,
};
use crate::layout::HvmLayout;
use crate::memory::PopulateStats;
use crate::store::{Store, StoreError, StoreResult};
use crate::types::{DomId, E820Entry, MapAddr, MapFrame, Mfn};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

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
    /// Wall-clock time of the build, microseconds.
    pub elapsed_us: u64,
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
            "  elapsed        {:.3} ms",
            self.elapsed_us as f64 / 1000.0
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
}

impl<'a> Counting<'a> {
    /// Count calls to `inner`.
    pub fn new(inner: &'a dyn Hypervisor) -> Self {
        Counting {
            inner,
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    /// Calls so far, per kind.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Count a call of `kind` and hand back the hypervisor to make it on, or refuse it with
    /// ECANCELED once the build has been cancelled: every hypervisor call is a check point
    /// (see [`crate::cancel`]).
    fn tick(&self, kind: &'static str) -> XcResult<&'a dyn Hypervisor> {
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
        Ok(self.inner)
    }
}

impl Hypervisor for Counting<'_> {
    fn domain_getinfo(&self, domid: DomId) -> XcResult<DomainInfo> {
        self.tick("domain_getinfo")?.domain_getinfo(domid)
    }
    fn physinfo(&self) -> XcResult<PhysInfo> {
        self.tick("physinfo")?.physinfo()
    }
    fn vcpu_setaffinity_hard(&self, domid: DomId, vcpu: u32, hard: &[bool]) -> XcResult<()> {
        self.tick("vcpu_setaffinity_hard")?
            .vcpu_setaffinity_hard(domid, vcpu, hard)
    }
    fn sched_credit_domain_get(&self, domid: DomId) -> XcResult<SchedCredit> {
        self.tick("sched_credit_domain_get")?
            .sched_credit_domain_get(domid)
    }
    fn sched_credit_domain_set(&self, domid: DomId, params: SchedCredit) -> XcResult<()> {
        self.tick("sched_credit_domain_set")?
            .sched_credit_domain_set(domid, params)
    }
    fn domain_set_tsc_info(&self, domid: DomId, tsc_mode: u32) -> XcResult<()> {
        self.tick("domain_set_tsc_info")?
            .domain_set_tsc_info(domid, tsc_mode)
    }
    fn domain_claim_pages(&self, domid: DomId, nr_pages: u64) -> XcResult<()> {
        self.tick("domain_claim_pages")?
            .domain_claim_pages(domid, nr_pages)
    }
    fn domain_set_pod_target(&self, domid: DomId, target_pages: u64) -> XcResult<PodInfo> {
        self.tick("domain_set_pod_target")?
            .domain_set_pod_target(domid, target_pages)
    }
    fn domain_populate_physmap(
        &self,
        domid: DomId,
        order: u32,
        flags: MemFlags,
        extents: &mut [u64],
    ) -> XcResult<usize> {
        self.tick("domain_populate_physmap")?
            .domain_populate_physmap(domid, order, flags, extents)
    }
    fn clear_domain_pages(&self, domid: DomId, first: MapFrame, nr_pages: u64) -> XcResult<()> {
        self.tick("clear_domain_pages")?
            .clear_domain_pages(domid, first, nr_pages)
    }
    fn write_guest(&self, domid: DomId, at: MapAddr, data: &[u8]) -> XcResult<()> {
        self.tick("write_guest")?.write_guest(domid, at, data)
    }
    fn read_guest(&self, domid: DomId, at: MapAddr, buf: &mut [u8]) -> XcResult<()> {
        self.tick("read_guest")?.read_guest(domid, at, buf)
    }
    fn hvm_param_set(&self, domid: DomId, param: u32, value: u64) -> XcResult<()> {
        self.tick("hvm_param_set")?
            .hvm_param_set(domid, param, value)
    }
    fn hvm_param_get(&self, domid: DomId, param: u32) -> XcResult<u64> {
        self.tick("hvm_param_get")?.hvm_param_get(domid, param)
    }
    fn domain_set_memory_map(&self, domid: DomId, e820: &[E820Entry]) -> XcResult<()> {
        self.tick("domain_set_memory_map")?
            .domain_set_memory_map(domid, e820)
    }
    fn domain_set_time_offset(&self, domid: DomId, offset_s: i32) -> XcResult<()> {
        self.tick("domain_set_time_offset")?
            .domain_set_time_offset(domid, offset_s)
    }
    fn get_cpu_featureset(&self, kind: FeaturesetKind) -> XcResult<Vec<u32>> {
        self.tick("get_cpu_featureset")?.get_cpu_featureset(kind)
    }
    fn cpuid_apply_policy(&self, domid: DomId, policy: &CpuidPolicy) -> XcResult<()> {
        self.tick("cpuid_apply_policy")?
            .cpuid_apply_policy(domid, policy)
    }
    fn gnttab_seed(
        &self,
        domid: DomId,
        console: MapFrame,
        xenstore: MapFrame,
        console_domid: DomId,
        xenstore_domid: DomId,
    ) -> XcResult<()> {
        self.tick("gnttab_seed")?.gnttab_seed(
            domid,
            console,
            xenstore,
            console_domid,
            xenstore_domid,
        )
    }
    fn domain_hvm_set_boot_vcpu(&self, domid: DomId, vcpu: &HvmBootVcpu) -> XcResult<()> {
        self.tick("domain_hvm_set_boot_vcpu")?
            .domain_hvm_set_boot_vcpu(domid, vcpu)
    }
    fn reserved_device_memory_map(&self, sbdf: PciSbdf) -> XcResult<Vec<ReservedRange>> {
        self.tick("reserved_device_memory_map")?
            .reserved_device_memory_map(sbdf)
    }
    fn domain_set_address_size(&self, domid: DomId, bits: u32) -> XcResult<()> {
        self.tick("domain_set_address_size")?
            .domain_set_address_size(domid, bits)
    }
    fn get_native_protocol(&self, domid: DomId) -> XcResult<String> {
        self.tick("get_native_protocol")?.get_native_protocol(domid)
    }
    fn domain_shared_info_frame(&self, domid: DomId) -> XcResult<Mfn> {
        self.tick("domain_shared_info_frame")?
            .domain_shared_info_frame(domid)
    }
    fn mmuext_pin_l4_table(&self, domid: DomId, l4: Mfn) -> XcResult<()> {
        self.tick("mmuext_pin_l4_table")?
            .mmuext_pin_l4_table(domid, l4)
    }
    fn hypercall_page_init(&self, domid: DomId, page: Mfn) -> XcResult<()> {
        self.tick("hypercall_page_init")?
            .hypercall_page_init(domid, page)
    }
    fn vcpu_setcontext_pv(&self, domid: DomId, vcpu: u32, ctx: &PvVcpuContext) -> XcResult<()> {
        self.tick("vcpu_setcontext_pv")?
            .vcpu_setcontext_pv(domid, vcpu, ctx)
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
}

impl<'a> Recording<'a> {
    /// Record writes to `inner`.
    pub fn new(inner: &'a dyn Store) -> Self {
        Recording {
            inner,
            writes: Mutex::new(Vec::new()),
        }
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
        self.inner.read(path)
    }
    fn write(&self, path: &str, value: &str) -> StoreResult<()> {
        store_checkpoint("write", path)?;
        self.inner.write(path, value)?;
        self.writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((path.to_string(), value.to_string()));
        Ok(())
    }
    fn directory(&self, path: &str) -> StoreResult<Vec<String>> {
        store_checkpoint("directory", path)?;
        self.inner.directory(path)
    }
    fn rm(&self, path: &str) -> StoreResult<()> {
        store_checkpoint("rm", path)?;
        self.inner.rm(path)
    }
}
