//! The simulated Xen host: a [`Hypervisor`] that models what Xen 4.17 does for each call,
//! so builders can be run, tested and measured without Xen.
//!
//! It is not a mock. Memory comes from a per-node buddy allocator (`heap`) run the way
//! `alloc_heap_pages()`/`get_free_buddy()` run it: smallest sufficient order, split keeping
//! the upper half, node rotation from `last_alloc_node`, exact-node requests that never
//! spill, the claim gate, `max_pages` charged per whole extent, the caller's
//! `memop-max-order`, PoD marking and the PoD cache of `p2m_pod_set_mem_target()`. Calls
//! fail where Xen fails, with Xen's errno; populate stops at the first failing extent and
//! reports how many were done, as Xen does.
//!
//! The host is described by a spec string ([`HostSpec`]): node count and size, CPUs,
//! memory held by other domains, fragmentation, the toolstack's privilege and the
//! scheduler. Domains are created and destroyed with [`SimHost::create_domain`] and
//! [`SimHost::destroy_domain`] (the toolstack's job, outside the builder's seam).
//!
//! Every call is traced ([`TraceEntry`]); faults can be injected ([`Fault`]); the state can
//! be inspected ([`SimHost::domain_snapshot`], [`SimHost::p2m_extents`], the free-list
//! counters) and checked ([`SimHost::check_accounting`]).
//!
//! For a restore it keeps what a saved domain carries: the HVM context (checked as
//! `hvm_load()` checks it, see `hvm_context`), the whole TSC state, the CPUID and MSR policy
//! as given; and `decrease_reservation` gives a page back (translated domains only).
//!
//! For a save it models log-dirty (`shadow_control`: on, off, clean with the bitmap; every
//! write through a foreign map or by the guest itself, [`SimHost::guest_write`], marks its
//! pages), `getpageframeinfo3` (NOTAB for RAM, backing a PoD entry as Xen's `P2M_ALLOC` lookup
//! does; XTAB for anything else), the highest gfn (from the p2m as it is now, where Xen keeps
//! the highest ever mapped), the domain's CPU policy (what a restore set, else the applied
//! featureset as the leaves its words come from) and the toolstack's suspend
//! ([`SimHost::set_shutdown`]). The whole host can be kept in a file between runs (`persist`).
//! Stricter than Xen: log-dirty, page types and `decrease_reservation` are modelled for
//! translated domains only (a PV domain gets EINVAL).
//!
//! Left out: zones and the DMA-zone reservation, page scrubbing, hypercall
//! preemption and continuations, PoD zero-page reclaim and the sweep, 2 MiB demand population (a touched PoD frame is backed 4 KiB at a time), XSM,
//! per-domain ITSC handling in the CPUID clamp, and device passthrough (so
//! `set_pod_target` never says ENOTEMPTY). One mutex guards the whole host: calls are
//! atomic with respect to each other, as if Xen's heap lock covered every hypercall.
//!
//! Where the simulator is louder than Xen, on purpose: `populate_physmap` for a missing
//! domain says ESRCH and an extent order above 18 says EINVAL (Xen silently reports 0
//! extents done for both), so a builder bug cannot pass for a full host; and a frame
//! numbered for the other kind of domain (a gfn for PV, an MFN for HVM/PVH) is EINVAL in the
//! foreign-map calls and `gnttab_seed`, where Xen takes any number.
//!
//! Errnos that follow Xen rather than intuition: `claim_pages` for a missing domain is
//! EINVAL; TSC mode 3 (PVRDTSCP, removed) is EINVAL; `cpuid_apply_policy` never refuses
//! feature bits (Xen 4.17 clamps them to the domain kind's maximum; see
//! [`DomainSnapshot::cpuid_effective`]) and only refuses set bits beyond the featureset
//! length (EOPNOTSUPP, as libxc does); lowering the PoD target below `tot_pages` changes
//! nothing (the balloon driver's job in `p2m_pod_set_mem_target()`).

mod domain;
mod fault;
mod features;
mod heap;
mod hvm_context;
mod ops;
mod persist;
mod spec;
#[cfg(test)]
mod tests;
mod trace;

pub use domain::{DomainConfig, DomainSnapshot, GfnState, GrantSeed, P2mExtent};
pub use fault::{xc_function, Fault, FaultAction, KINDS as CALL_KINDS};
pub use features::{featureset, FEATURESET_WORDS};
pub use heap::NR_ORDERS;
pub use spec::{Caller, HostSpec, Scheduler, SpecError};
pub use trace::TraceEntry;

use super::{
    CpuidLeaf, CpuidPolicy, DomainInfo, FeaturesetKind, HvmBootVcpu, Hypervisor, MemFlags,
    MsrEntry, PciSbdf, PhysInfo, PodInfo, PvVcpuContext, ReservedRange, SchedCredit, TscInfo,
    XcError, XcResult,
};
use crate::types::{DomId, E820Entry, GuestPhys, MapAddr, MapFrame, Mfn};
use domain::Domain;
use fault::Faults;
use heap::Heap;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use trace::Trace;

/// A simulated Xen host. Cheap to share: wrap it in an `Arc` and build from many threads.
#[derive(Debug)]
pub struct SimHost {
    state: Mutex<HostState>,
    /// [`SimHost::set_call_latency`], in microseconds.
    latency_us: AtomicU64,
}

/// Everything behind the host's one lock.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct HostState {
    spec: HostSpec,
    heap: Heap,
    /// Per node: pages held by other domains from the start (never freed).
    held: Vec<u64>,
    /// `outstanding_claims`.
    outstanding_claims: u64,
    #[serde(with = "persist::pairs")]
    domains: BTreeMap<DomId, Domain>,
    next_domid: u32,
    /// pCPU → node.
    cpu_node: Vec<u32>,
    /// Nodes that have at least one pCPU.
    cpu_nodes: u64,
    #[serde(with = "persist::pairs")]
    rmrr: BTreeMap<PciSbdf, Vec<ReservedRange>>,
    /// The trace and the armed faults belong to one run, not to the host's state.
    #[serde(skip)]
    trace: Trace,
    #[serde(skip)]
    faults: Faults,
}

impl Default for SimHost {
    fn default() -> Self {
        SimHost::new(HostSpec::default())
    }
}

impl SimHost {
    /// A host as `spec` describes it, with no domains.
    pub fn new(spec: HostSpec) -> Self {
        let (heap, held) = Heap::build(&spec);
        let cpu_node: Vec<u32> = (0..spec.cpus).map(|c| spec.cpu_to_node(c)).collect();
        let cpu_nodes = cpu_node.iter().fold(0u64, |m, &n| m | (1 << n));
        SimHost {
            state: Mutex::new(HostState {
                spec,
                heap,
                held,
                outstanding_claims: 0,
                domains: BTreeMap::new(),
                next_domid: 1,
                cpu_node,
                cpu_nodes,
                rmrr: BTreeMap::new(),
                trace: Trace::default(),
                faults: Faults::default(),
            }),
            latency_us: AtomicU64::new(0),
        }
    }

    /// Make every call from now on take at least `latency` (slept outside the host lock, so
    /// other domains' calls proceed meanwhile), as a slow hypercall on a loaded host would:
    /// for tests of what happens during a long build, such as cancelling it.
    pub fn set_call_latency(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us.store(us, Ordering::Relaxed);
    }

    /// A host from a spec string (see [`HostSpec`]).
    pub fn from_spec(spec: &str) -> Result<Self, SpecError> {
        Ok(SimHost::new(HostSpec::parse(spec)?))
    }

    fn lock(&self) -> MutexGuard<'_, HostState> {
        // Nothing panics while the lock is held on purpose; if something did, the state is
        // still the state of some completed step, so keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run one call: count it against armed faults, run it unless a fault fires, trace it.
    fn call<T>(
        &self,
        kind: &'static str,
        domid: Option<DomId>,
        args: String,
        op: impl FnOnce(&mut HostState, Option<usize>) -> XcResult<T>,
        show: impl FnOnce(&T) -> String,
    ) -> XcResult<T> {
        let latency_us = self.latency_us.load(Ordering::Relaxed);
        if latency_us > 0 {
            std::thread::sleep(Duration::from_micros(latency_us));
        }
        let mut st = self.lock();
        let fault = st.faults.check(kind, domid);
        let result = match fault {
            None => op(&mut st, None),
            Some(FaultAction::Partial(n)) if kind == "domain_populate_physmap" => {
                op(&mut st, Some(n))
            }
            Some(FaultAction::Partial(_)) => Err(XcError::errno(xc_function(kind), libc::ENOMEM)),
            Some(FaultAction::Errno(e)) => Err(XcError::errno(xc_function(kind), e)),
        };
        let mut detail = args;
        match &result {
            Ok(v) => {
                let s = show(v);
                if !s.is_empty() {
                    if !detail.is_empty() {
                        detail.push(' ');
                    }
                    detail.push_str(&s);
                }
            }
            Err(e) => detail.push_str(&format!(" -> {e}")),
        }
        if fault.is_some() {
            detail.push_str(" [injected]");
        }
        let errno = result.as_ref().err().map(|e| e.code);
        st.trace.push(kind, domid, detail, errno);
        result
    }

    /// The spec the host was built from.
    pub fn spec(&self) -> HostSpec {
        self.lock().spec.clone()
    }

    /// Create a domain as the toolstack does before calling the builder
    /// (`xc_domain_create`, `xc_domain_setmaxmem`, `xc_domain_node_setaffinity`).
    /// Domids count up from 1.
    pub fn create_domain(&self, cfg: &DomainConfig) -> XcResult<DomId> {
        let args = format!(
            "domid={:?} hvm={} hap={} vcpus={} max_mem_kib={} node_affinity={:?}",
            cfg.domid.map(|d| d.0),
            cfg.hvm,
            cfg.hap,
            cfg.max_vcpus,
            cfg.max_mem_kib,
            cfg.node_affinity
        );
        self.call(
            "create_domain",
            None,
            args,
            |st, _| st.create_domain(cfg),
            |d| format!("-> d{d}"),
        )
    }

    /// Destroy a domain: every page it owns (PoD cache and re-pointed pages included) goes
    /// back to the heap, merging, and its claim is dropped. Later calls for it get ESRCH.
    pub fn destroy_domain(&self, domid: DomId) -> XcResult<()> {
        self.call(
            "destroy_domain",
            Some(domid),
            String::new(),
            |st, _| st.destroy_domain(domid),
            |_| String::new(),
        )
    }

    /// The toolstack shuts the domain down with `reason` (`SHUTDOWN_suspend` for a save: the
    /// guest answered the suspend request), or (`None`) resumes it. Not a traced call.
    pub fn set_shutdown(&self, domid: DomId, reason: Option<u32>) -> XcResult<()> {
        let mut st = self.lock();
        let dom = st
            .domains
            .get_mut(&domid)
            .ok_or_else(|| XcError::errno("xc_domain_shutdown", libc::ESRCH))?;
        dom.shutdown_reason = reason;
        Ok(())
    }

    /// The guest itself writes `data` at guest-physical `paddr` (a translated domain): what a
    /// running guest does between the passes of a live save, so it is marked dirty and not
    /// traced as a call. Fails as a foreign map would on an unpopulated frame.
    pub fn guest_write(&self, domid: DomId, paddr: u64, data: &[u8]) -> XcResult<()> {
        let mut st = self.lock();
        st.write_guest(domid, MapAddr::phys(GuestPhys(paddr)), data)
    }

    /// Whether `domid` exists.
    pub fn domain_exists(&self, domid: DomId) -> bool {
        self.lock().domains.contains_key(&domid)
    }

    /// Every existing domain.
    pub fn domains(&self) -> Vec<DomId> {
        self.lock().domains.keys().copied().collect()
    }

    /// Register an RMRR of a PCI device, for `reserved_device_memory_map`.
    pub fn add_rmrr(&self, sbdf: PciSbdf, range: ReservedRange) {
        self.lock().rmrr.entry(sbdf).or_default().push(range);
    }

    /// Arm a fault. Refused if `fault.kind` is not a call kind (see [`CALL_KINDS`]).
    pub fn inject(&self, fault: Fault) -> Result<(), String> {
        self.lock().faults.add(fault)
    }

    /// Faults armed and not yet fired.
    pub fn pending_faults(&self) -> Vec<Fault> {
        self.lock().faults.pending()
    }

    /// Disarm every fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Every traced call, oldest first.
    pub fn trace(&self) -> Vec<TraceEntry> {
        self.lock().trace.entries().to_vec()
    }

    /// The traced calls about `domid`.
    pub fn trace_for(&self, domid: DomId) -> Vec<TraceEntry> {
        self.lock()
            .trace
            .entries()
            .iter()
            .filter(|e| e.domid == Some(domid))
            .cloned()
            .collect()
    }

    /// Calls per kind, for one domain or (`None`) for the whole host.
    pub fn call_counts(&self, domid: Option<DomId>) -> BTreeMap<&'static str, u64> {
        self.lock().trace.counts(domid)
    }

    /// Forget the trace (sequence numbers keep counting).
    pub fn clear_trace(&self) {
        self.lock().trace.clear();
    }

    /// Free pages on the host (`total_avail_pages`).
    pub fn free_pages(&self) -> u64 {
        self.lock().heap.total_free()
    }

    /// Free pages on `node` (0 for a node that does not exist).
    pub fn free_pages_on_node(&self, node: u32) -> u64 {
        self.lock().heap.node_free(node as usize)
    }

    /// Free chunks on `node` per order 0..=18.
    pub fn free_chunks_by_order(&self, node: u32) -> [u64; NR_ORDERS] {
        self.lock().heap.chunks_by_order(node as usize)
    }

    /// Pages promised to claims (`outstanding_claims`).
    pub fn outstanding_claims(&self) -> u64 {
        self.lock().outstanding_claims
    }

    /// Frames the host spans (free, owned by domains, held by other domains).
    pub fn total_pages(&self) -> u64 {
        self.lock().heap.total_pages()
    }

    /// `[first, end)` machine frames of `node`.
    pub fn node_mfn_range(&self, node: u32) -> Option<(u64, u64)> {
        self.lock().heap.node_range(node as usize)
    }

    /// The node holding machine frame `mfn`.
    pub fn node_of_mfn(&self, mfn: u64) -> Option<u32> {
        self.lock()
            .heap
            .node_of(mfn)
            .and_then(|n| u32::try_from(n).ok())
    }

    /// A copy of a domain's state.
    pub fn domain_snapshot(&self, domid: DomId) -> Option<DomainSnapshot> {
        let st = self.lock();
        st.domains.get(&domid).map(|d| st.snapshot(d))
    }

    /// The domain's p2m as extents, by gfn.
    pub fn p2m_extents(&self, domid: DomId) -> Option<Vec<P2mExtent>> {
        self.lock().domains.get(&domid).map(Domain::extents)
    }

    /// What backs guest frame `gfn` of `domid` (`None`: not populated, or no such domain).
    pub fn lookup_gfn(&self, domid: DomId, gfn: u64) -> Option<GfnState> {
        self.lock()
            .domains
            .get(&domid)
            .and_then(|d| d.state_of(gfn))
    }

    /// Check the books: free lists match their counters and are fully merged; each
    /// domain's pages add up to its `tot_pages` and its PoD entries to its count; claims
    /// add up; free + owned + held by others = every frame, per node; and no frame is
    /// both free and owned, or owned twice.
    pub fn check_accounting(&self) -> Result<(), String> {
        self.lock().check_accounting()
    }
}

impl HostState {
    fn snapshot(&self, d: &Domain) -> DomainSnapshot {
        let mut ram_by_order = BTreeMap::new();
        let mut pod_by_order = BTreeMap::new();
        for e in d.p2m.values() {
            let map = if e.mfn.is_some() {
                &mut ram_by_order
            } else {
                &mut pod_by_order
            };
            *map.entry(e.order).or_insert(0) += e.len;
        }
        let mut by_node = vec![0u64; self.heap.nr_nodes()];
        for (mfn, len) in d.owned_blocks() {
            if let Some(n) = self.heap.node_of(mfn) {
                by_node[n] += len;
            }
        }
        let nodes = (0u32..)
            .take(self.heap.nr_nodes())
            .filter(|n| d.node_affinity & (1 << n) != 0)
            .collect();
        let cpus = self.spec.cpus;
        DomainSnapshot {
            domid: d.id,
            hvm: d.hvm,
            hap: d.hap,
            max_vcpus: d.max_vcpus,
            tot_pages: d.tot_pages,
            max_pages: d.max_pages,
            outstanding_pages: d.outstanding,
            node_affinity: nodes,
            auto_node_affinity: d.auto_node_affinity,
            last_alloc_node: d.last_alloc_node,
            ram_pages_by_order: ram_by_order,
            pod_pages_by_order: pod_by_order,
            pages_by_node: by_node,
            pod_cache_pages: d.pod_cache_pages(),
            pod_entries: d.pod_entries,
            repopulated_pages: d.repopulated_pages,
            unmapped_pages: d.unmapped.iter().map(|&(_, n)| n).sum(),
            hvm_params: d.params.iter().map(|(&k, &v)| (k, v)).collect(),
            e820: d.e820.clone(),
            vcpu_hard_affinity: d
                .vcpu_hard
                .iter()
                .map(|v| match v {
                    None => (0..cpus).collect(),
                    Some(mask) => (0..cpus).filter(|&c| mask[c as usize]).collect(),
                })
                .collect(),
            sched: d.sched,
            tsc_mode: d.tsc_mode,
            tsc_info: d.tsc,
            hvm_context: d.hvm_context.clone(),
            cpu_policy: d.cpu_policy.clone(),
            time_offset_s: d.time_offset,
            cpuid_policy: d.cpuid.clone(),
            cpuid_effective: d.cpuid_effective.clone(),
            grants: d.grants,
            boot_vcpu: d.boot_vcpu,
            written_pages: d.memory.len() as u64,
            address_size: d.address_size,
            shared_info_mfn: d.shared_info_mfn,
            pinned_l4_mfn: d.pinned_l4,
            pv_vcpu: d.pv_vcpu,
            hypercall_page_mfn: d.hypercall_page,
        }
    }

    fn check_accounting(&self) -> Result<(), String> {
        self.heap.check()?;
        let claims: u64 = self.domains.values().map(|d| d.outstanding).sum();
        if claims != self.outstanding_claims {
            return Err(format!(
                "domain claims sum to {claims}, outstanding_claims is {}",
                self.outstanding_claims
            ));
        }
        let nr_nodes = self.heap.nr_nodes();
        let mut owned_on = vec![0u64; nr_nodes];
        // (start, end, owner) of every free or owned range; owner 0 = free.
        let mut ranges: Vec<(u64, u64, u32)> = self
            .heap
            .free_chunks()
            .map(|(m, n)| (m, m + n, 0))
            .collect();
        for d in self.domains.values() {
            let blocks = d.owned_blocks();
            let owned: u64 = blocks.iter().map(|&(_, n)| n).sum();
            if owned != d.tot_pages {
                return Err(format!(
                    "d{}: owns {owned} pages, tot_pages is {}",
                    d.id, d.tot_pages
                ));
            }
            let pod: u64 = d
                .p2m
                .values()
                .filter(|e| e.mfn.is_none())
                .map(|e| e.len)
                .sum();
            if pod != d.pod_entries {
                return Err(format!(
                    "d{}: {pod} PoD entries in the p2m, count is {}",
                    d.id, d.pod_entries
                ));
            }
            for (mfn, len) in blocks {
                let node = self
                    .heap
                    .node_of(mfn)
                    .filter(|&n| self.heap.node_of(mfn + len - 1) == Some(n));
                let Some(node) = node else {
                    return Err(format!(
                        "d{}: block {mfn:#x}+{len} is not inside one node",
                        d.id
                    ));
                };
                owned_on[node] += len;
                ranges.push((mfn, mfn + len, d.id.0));
            }
        }
        for (n, owned) in owned_on.iter().enumerate() {
            let (first, end) = self.heap.node_range(n).unwrap_or((0, 0));
            let sum = self.heap.node_free(n) + owned + self.held[n];
            if sum != end - first {
                return Err(format!(
                    "node {n}: free {} + owned {owned} + held {} = {sum}, node has {} pages",
                    self.heap.node_free(n),
                    self.held[n],
                    end - first
                ));
            }
        }
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            if w[1].0 < w[0].1 {
                let who = |o: u32| {
                    if o == 0 {
                        "free".to_string()
                    } else {
                        format!("d{o}")
                    }
                };
                return Err(format!(
                    "mfn {:#x}: {} and {} overlap",
                    w[1].0,
                    who(w[0].2),
                    who(w[1].2)
                ));
            }
        }
        Ok(())
    }
}

fn show_unit(_: &()) -> String {
    String::new()
}

impl Hypervisor for SimHost {
    fn domain_getinfo(&self, domid: DomId) -> XcResult<DomainInfo> {
        self.call(
            "domain_getinfo",
            Some(domid),
            String::new(),
            |st, _| st.domain_getinfo(domid),
            |i| {
                format!(
                    "tot_pages={} max_pages={} outstanding={}",
                    i.tot_pages, i.max_pages, i.outstanding_pages
                )
            },
        )
    }

    fn physinfo(&self) -> XcResult<PhysInfo> {
        self.call(
            "physinfo",
            None,
            String::new(),
            |st, _| Ok(st.physinfo()),
            |p| {
                format!(
                    "free_pages={} outstanding={}",
                    p.free_pages, p.outstanding_pages
                )
            },
        )
    }

    fn vcpu_setaffinity_hard(&self, domid: DomId, vcpu: u32, hard: &[bool]) -> XcResult<()> {
        let cpus: Vec<usize> = hard
            .iter()
            .enumerate()
            .filter(|(_, &b)| b)
            .map(|(i, _)| i)
            .collect();
        let args = format!("vcpu={vcpu} cpus={cpus:?}");
        self.call(
            "vcpu_setaffinity_hard",
            Some(domid),
            args,
            |st, _| st.vcpu_setaffinity_hard(domid, vcpu, hard),
            show_unit,
        )
    }

    fn sched_credit_domain_get(&self, domid: DomId) -> XcResult<SchedCredit> {
        self.call(
            "sched_credit_domain_get",
            Some(domid),
            String::new(),
            |st, _| st.sched_get(domid),
            |s| format!("weight={} cap={}", s.weight, s.cap),
        )
    }

    fn sched_credit_domain_set(&self, domid: DomId, params: SchedCredit) -> XcResult<()> {
        let args = format!("weight={} cap={}", params.weight, params.cap);
        self.call(
            "sched_credit_domain_set",
            Some(domid),
            args,
            |st, _| st.sched_set(domid, params),
            show_unit,
        )
    }

    fn domain_set_tsc_info(&self, domid: DomId, tsc_mode: u32) -> XcResult<()> {
        let args = format!("mode={tsc_mode}");
        self.call(
            "domain_set_tsc_info",
            Some(domid),
            args,
            |st, _| st.set_tsc_info(domid, tsc_mode),
            show_unit,
        )
    }

    fn domain_claim_pages(&self, domid: DomId, nr_pages: u64) -> XcResult<()> {
        let args = format!("pages={nr_pages}");
        self.call(
            "domain_claim_pages",
            Some(domid),
            args,
            |st, _| st.claim_pages(domid, nr_pages),
            show_unit,
        )
    }

    fn domain_set_pod_target(&self, domid: DomId, target_pages: u64) -> XcResult<PodInfo> {
        let args = format!("target={target_pages}");
        self.call(
            "domain_set_pod_target",
            Some(domid),
            args,
            |st, _| st.set_pod_target(domid, target_pages),
            |i| {
                format!(
                    "tot_pages={} cache={} entries={}",
                    i.tot_pages, i.pod_cache_pages, i.pod_entries
                )
            },
        )
    }

    fn domain_populate_physmap(
        &self,
        domid: DomId,
        order: u32,
        flags: MemFlags,
        extents: &mut [u64],
    ) -> XcResult<usize> {
        let first = extents
            .first()
            .map_or(String::new(), |g| format!(" first={g:#x}"));
        let args = format!(
            "order={order} extents={} flags={:#x}{first}",
            extents.len(),
            flags.bits()
        );
        self.call(
            "domain_populate_physmap",
            Some(domid),
            args,
            |st, partial| st.populate_physmap(domid, order, flags, extents, partial),
            |done| format!("done={done}"),
        )
    }

    fn clear_domain_pages(&self, domid: DomId, first: MapFrame, nr_pages: u64) -> XcResult<()> {
        let args = format!("first={first} pages={nr_pages}");
        self.call(
            "clear_domain_pages",
            Some(domid),
            args,
            |st, _| st.clear_pages(domid, first, nr_pages),
            show_unit,
        )
    }

    fn write_guest(&self, domid: DomId, at: MapAddr, data: &[u8]) -> XcResult<()> {
        let args = format!("{at} len={}", data.len());
        self.call(
            "write_guest",
            Some(domid),
            args,
            |st, _| st.write_guest(domid, at, data),
            show_unit,
        )
    }

    fn read_guest(&self, domid: DomId, at: MapAddr, buf: &mut [u8]) -> XcResult<()> {
        let args = format!("{at} len={}", buf.len());
        self.call(
            "read_guest",
            Some(domid),
            args,
            |st, _| st.read_guest(domid, at, buf),
            show_unit,
        )
    }

    fn hvm_param_set(&self, domid: DomId, param: u32, value: u64) -> XcResult<()> {
        let args = format!("param={param} value={value:#x}");
        self.call(
            "hvm_param_set",
            Some(domid),
            args,
            |st, _| st.hvm_param_set(domid, param, value),
            show_unit,
        )
    }

    fn hvm_param_get(&self, domid: DomId, param: u32) -> XcResult<u64> {
        let args = format!("param={param}");
        self.call(
            "hvm_param_get",
            Some(domid),
            args,
            |st, _| st.hvm_param_get(domid, param),
            |v| format!("-> {v:#x}"),
        )
    }

    fn domain_set_memory_map(&self, domid: DomId, e820: &[E820Entry]) -> XcResult<()> {
        let args = format!("entries={}", e820.len());
        self.call(
            "domain_set_memory_map",
            Some(domid),
            args,
            |st, _| st.set_memory_map(domid, e820),
            show_unit,
        )
    }

    fn domain_set_time_offset(&self, domid: DomId, offset_s: i32) -> XcResult<()> {
        let args = format!("offset={offset_s}");
        self.call(
            "domain_set_time_offset",
            Some(domid),
            args,
            |st, _| st.set_time_offset(domid, offset_s),
            show_unit,
        )
    }

    fn get_cpu_featureset(&self, kind: FeaturesetKind) -> XcResult<Vec<u32>> {
        let args = format!("kind={kind:?}");
        self.call(
            "get_cpu_featureset",
            None,
            args,
            |_, _| Ok(featureset(kind).to_vec()),
            |w| format!("words={}", w.len()),
        )
    }

    fn cpuid_apply_policy(&self, domid: DomId, policy: &CpuidPolicy) -> XcResult<()> {
        let args = format!(
            "restore={} words={} nested={} cores_per_socket={}",
            policy.restore,
            policy.featureset.len(),
            policy.nested_virt,
            policy.cores_per_socket
        );
        self.call(
            "cpuid_apply_policy",
            Some(domid),
            args,
            |st, _| st.cpuid_apply_policy(domid, policy),
            show_unit,
        )
    }

    fn gnttab_seed(
        &self,
        domid: DomId,
        console: MapFrame,
        xenstore: MapFrame,
        console_domid: DomId,
        xenstore_domid: DomId,
    ) -> XcResult<()> {
        let seed = GrantSeed {
            console,
            xenstore,
            console_domid,
            xenstore_domid,
        };
        let args =
            format!("console={console}@d{console_domid} xenstore={xenstore}@d{xenstore_domid}");
        self.call(
            "gnttab_seed",
            Some(domid),
            args,
            |st, _| st.gnttab_seed(domid, seed),
            show_unit,
        )
    }

    fn domain_decrease_reservation(&self, domid: DomId, gfns: &[u64]) -> XcResult<usize> {
        let args = format!("extents={}", gfns.len());
        self.call(
            "domain_decrease_reservation",
            Some(domid),
            args,
            |st, _| st.decrease_reservation(domid, gfns),
            |done| format!("{done}"),
        )
    }

    fn domain_logdirty(&self, domid: DomId, enable: bool) -> XcResult<()> {
        self.call(
            "domain_logdirty",
            Some(domid),
            format!("enable={enable}"),
            |st, _| st.logdirty(domid, enable),
            show_unit,
        )
    }

    fn domain_logdirty_clean(
        &self,
        domid: DomId,
        bitmap: &mut [u64],
        nr_pfns: u64,
    ) -> XcResult<u64> {
        self.call(
            "domain_logdirty_clean",
            Some(domid),
            format!("nr_pfns={nr_pfns}"),
            |st, _| st.logdirty_clean(domid, bitmap, nr_pfns),
            |dirty| format!("dirty={dirty}"),
        )
    }

    fn domain_pfn_types(&self, domid: DomId, pfns: &[u64]) -> XcResult<Vec<u32>> {
        self.call(
            "domain_pfn_types",
            Some(domid),
            format!("pfns={}", pfns.len()),
            |st, _| st.pfn_types(domid, pfns),
            |_| String::new(),
        )
    }

    fn xen_version(&self) -> XcResult<(u32, u32)> {
        self.call(
            "xen_version",
            None,
            String::new(),
            |_, _| Ok((4, 17)),
            |v| format!("{}.{}", v.0, v.1),
        )
    }

    fn domain_get_cpu_policy(&self, domid: DomId) -> XcResult<(Vec<CpuidLeaf>, Vec<MsrEntry>)> {
        self.call(
            "domain_get_cpu_policy",
            Some(domid),
            String::new(),
            |st, _| st.get_cpu_policy(domid),
            |(l, m)| format!("{} leaves, {} MSRs", l.len(), m.len()),
        )
    }

    fn domain_maximum_gpfn(&self, domid: DomId) -> XcResult<u64> {
        self.call(
            "domain_maximum_gpfn",
            Some(domid),
            String::new(),
            |st, _| st.maximum_gpfn(domid),
            |g| format!("{g:#x}"),
        )
    }

    fn domain_get_tsc_info(&self, domid: DomId) -> XcResult<TscInfo> {
        self.call(
            "domain_get_tsc_info",
            Some(domid),
            String::new(),
            |st, _| st.get_tsc_info(domid),
            |t| format!("{t:?}"),
        )
    }

    fn domain_restore_tsc_info(&self, domid: DomId, info: &TscInfo) -> XcResult<()> {
        let args = format!("{info:?}");
        self.call(
            "domain_restore_tsc_info",
            Some(domid),
            args,
            |st, _| st.restore_tsc_info(domid, *info),
            show_unit,
        )
    }

    fn domain_hvm_getcontext(&self, domid: DomId) -> XcResult<Vec<u8>> {
        self.call(
            "domain_hvm_getcontext",
            Some(domid),
            String::new(),
            |st, _| st.hvm_getcontext(domid),
            |c| format!("{} bytes", c.len()),
        )
    }

    fn domain_hvm_setcontext(&self, domid: DomId, context: &[u8]) -> XcResult<()> {
        let args = format!("{} bytes", context.len());
        self.call(
            "domain_hvm_setcontext",
            Some(domid),
            args,
            |st, _| st.hvm_setcontext(domid, context),
            show_unit,
        )
    }

    fn domain_set_cpu_policy(
        &self,
        domid: DomId,
        leaves: &[CpuidLeaf],
        msrs: &[MsrEntry],
    ) -> XcResult<()> {
        let args = format!("leaves={} msrs={}", leaves.len(), msrs.len());
        self.call(
            "domain_set_cpu_policy",
            Some(domid),
            args,
            |st, _| st.set_cpu_policy(domid, leaves, msrs),
            show_unit,
        )
    }

    fn domain_hvm_set_boot_vcpu(&self, domid: DomId, vcpu: &HvmBootVcpu) -> XcResult<()> {
        let args = format!(
            "entry={:#x} start_info={:#x}",
            vcpu.entry, vcpu.start_info_paddr
        );
        self.call(
            "domain_hvm_set_boot_vcpu",
            Some(domid),
            args,
            |st, _| st.set_boot_vcpu(domid, *vcpu),
            show_unit,
        )
    }

    fn reserved_device_memory_map(&self, sbdf: PciSbdf) -> XcResult<Vec<ReservedRange>> {
        let args = format!("sbdf={sbdf}");
        self.call(
            "reserved_device_memory_map",
            None,
            args,
            |st, _| Ok(st.rmrr.get(&sbdf).cloned().unwrap_or_default()),
            |r| format!("ranges={}", r.len()),
        )
    }

    fn domain_set_address_size(&self, domid: DomId, bits: u32) -> XcResult<()> {
        self.call(
            "domain_set_address_size",
            Some(domid),
            format!("bits={bits}"),
            |st, _| st.set_address_size(domid, bits),
            show_unit,
        )
    }

    fn get_native_protocol(&self, domid: DomId) -> XcResult<String> {
        self.call(
            "get_native_protocol",
            Some(domid),
            String::new(),
            |st, _| st.native_protocol(domid),
            |p| format!("-> {p}"),
        )
    }

    fn domain_shared_info_frame(&self, domid: DomId) -> XcResult<Mfn> {
        self.call(
            "domain_shared_info_frame",
            Some(domid),
            String::new(),
            |st, _| st.shared_info_frame(domid).map(Mfn),
            |m| format!("-> {m}"),
        )
    }

    fn mmuext_pin_l4_table(&self, domid: DomId, l4: Mfn) -> XcResult<()> {
        self.call(
            "mmuext_pin_l4_table",
            Some(domid),
            format!("mfn={l4}"),
            |st, _| st.pin_l4(domid, l4.0),
            show_unit,
        )
    }

    fn hypercall_page_init(&self, domid: DomId, page: Mfn) -> XcResult<()> {
        self.call(
            "hypercall_page_init",
            Some(domid),
            format!("mfn={page}"),
            |st, _| st.hypercall_init(domid, page.0),
            show_unit,
        )
    }

    fn vcpu_setcontext_pv(&self, domid: DomId, vcpu: u32, ctx: &PvVcpuContext) -> XcResult<()> {
        let args = format!(
            "vcpu={vcpu} rip={:#x} rsp={:#x} rsi={:#x} cr3={:#x}",
            ctx.rip, ctx.rsp, ctx.rsi, ctx.cr3
        );
        self.call(
            "vcpu_setcontext_pv",
            Some(domid),
            args,
            |st, _| st.set_pv_vcpu(domid, vcpu, *ctx),
            show_unit,
        )
    }

    fn domain_pages_by_node(&self, domid: DomId) -> XcResult<Vec<u64>> {
        self.call(
            "domain_pages_by_node",
            Some(domid),
            String::new(),
            |st, _| st.pages_by_node(domid),
            |v| format!("-> {v:?}"),
        )
    }
}
