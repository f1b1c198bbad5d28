//! What each call does to the host, following Xen 4.17's code paths
//! (`xen/common/memory.c`, `xen/common/page_alloc.c`, `xen/arch/x86/mm/p2m-pod.c`,
//! `xen/common/domctl.c`).

use super::domain::{Domain, DomainConfig, GrantSeed, SUPERPAGE_PAGES};
use super::features::{featureset, FEATURESET_WORDS};
use super::heap::Heap;
use super::hvm_context;
use super::spec::{Scheduler, MAX_NODES};
use super::HostState;
use crate::hypervisor::{
    pfinfo, CpuidLeaf, CpuidPolicy, DomainInfo, FeaturesetKind, HvmBootVcpu, MemFlags, MsrEntry,
    PhysInfo, PodInfo, PvVcpuContext, SchedCredit, TscInfo, XcError, XcResult,
};
use crate::types::usize_of;
use crate::types::{
    DomId, E820Entry, MapAddr, MapFrame, MAX_ORDER, P2M_GFN_LIMIT, PAGE_BYTES, PAGE_SHIFT,
    PAGE_USIZE,
};
use libc::{EEXIST, EFAULT, EINVAL, ENOMEM, ENOSPC, ENOSYS, EOPNOTSUPP, ESRCH};
use std::collections::BTreeSet;

/// Most CPUID leaves and MSRs a serialised policy holds, at least as many as Xen 4.17's
/// `CPUID_MAX_SERIALISED_LEAVES` and `MSR_MAX_SERIALISED_ENTRIES` (a round bound: the
/// simulator checks the order of magnitude, not the exact count).
const MAX_POLICY_LEAVES: usize = 256;
const MAX_POLICY_MSRS: usize = 256;
/// `E820MAX`: entries `XENMEM_set_memory_map` accepts.
const E820MAX: usize = 128;
/// `HVM_NR_PARAMS` in Xen 4.17.
const HVM_NR_PARAMS: u32 = 39;
/// `HVM_MAX_VCPUS`.
const HVM_MAX_VCPUS: u32 = 128;
/// `MAX_VIRT_CPUS` for PV.
const PV_MAX_VCPUS: u32 = 8192;
/// First reserved domid (`DOMID_FIRST_RESERVED`).
const DOMID_FIRST_RESERVED: u32 = 0x7ff0;

fn first_node(mask: u64) -> Option<u32> {
    (mask != 0).then(|| mask.trailing_zeros())
}

/// The lowest node in `mask` strictly above `node`.
fn next_node(mask: u64, node: u32) -> Option<u32> {
    let above = if node >= 63 {
        0
    } else {
        mask & (u64::MAX << (node + 1))
    };
    first_node(above)
}

/// `cycle_node()`: the next node after `node` in `mask`, wrapping.
fn cycle_node(mask: u64, node: u32) -> Option<u32> {
    next_node(mask, node).or_else(|| first_node(mask))
}

fn online_mask(nr_nodes: usize) -> u64 {
    if nr_nodes >= 64 {
        u64::MAX
    } else {
        (1u64 << nr_nodes) - 1
    }
}

/// `get_free_buddy()`'s node walk: the requested node or the one after `last_alloc_node`,
/// then the rest of the affinity mask cyclically, then (once, unless exact) the online
/// nodes outside it. Returns the block and its node.
fn get_free_buddy(
    heap: &mut Heap,
    order: u32,
    req_node: Option<u32>,
    exact: bool,
    affinity: u64,
    last_alloc_node: u32,
) -> Option<(u64, u32)> {
    let online = online_mask(heap.nr_nodes());
    let mut mask = if affinity & online != 0 {
        affinity & online
    } else {
        online
    };
    let mut node = match req_node {
        Some(n) => n,
        None => cycle_node(mask, last_alloc_node)?,
    };
    let mut first = node;
    let mut retried = false;
    // Each node is visited at most twice per pass; the bound only guards against a bug.
    for _ in 0..(4 * MAX_NODES + 4) {
        if let Some(mfn) = heap.take(node as usize, order) {
            return Some((mfn, node));
        }
        if exact && req_node.is_some() {
            return None;
        }
        if node >= 64 || mask & (1 << node) == 0 {
            // A requested node outside the mask was tried first; now walk the mask.
            node = first_node(mask)?;
            first = node;
            continue;
        }
        node = cycle_node(mask, node).unwrap_or(node);
        if node == first {
            if exact || retried {
                return None;
            }
            retried = true;
            mask = online & !mask;
            node = first_node(mask)?;
            first = node;
        }
    }
    None
}

/// Why an allocation for a domain failed.
#[derive(Debug)]
enum AllocFail {
    /// `alloc_heap_pages()` returned NULL: claim gate or no free buddy.
    NoMemory,
    /// `assign_pages()` refused: the extent would take `tot_pages` over `max_pages`.
    OverMax,
}

/// `domain_adjust_tot_pages()` charging `pages`: they consume the claim, as 4.17 does on
/// assignment.
fn charge_tot_pages(dom: &mut Domain, outstanding_claims: &mut u64, pages: u64) {
    dom.tot_pages = dom.tot_pages.saturating_add(pages);
    let used = dom.outstanding.min(pages);
    dom.outstanding -= used;
    *outstanding_claims = outstanding_claims.saturating_sub(used);
}

/// `domain_adjust_tot_pages()` refunding `pages`: a live claim grows by them, as in Xen.
fn refund_tot_pages(dom: &mut Domain, outstanding_claims: &mut u64, pages: u64) {
    dom.tot_pages = dom.tot_pages.saturating_sub(pages);
    if dom.outstanding > 0 {
        dom.outstanding += pages;
        *outstanding_claims = outstanding_claims.saturating_add(pages);
    }
}

/// `alloc_domheap_pages(d, order, memflags)` with `assign_pages()`.
fn alloc_domheap(
    heap: &mut Heap,
    outstanding_claims: &mut u64,
    dom: &mut Domain,
    order: u32,
    node: Option<u32>,
    exact: bool,
) -> Result<u64, AllocFail> {
    let request = 1u64 << order;
    // The claim gate: claimed memory is off limits unless this domain's own claim covers
    // the whole request.
    if outstanding_claims.saturating_add(request) > heap.total_free() && dom.outstanding < request {
        return Err(AllocFail::NoMemory);
    }
    let (mfn, got) = get_free_buddy(
        heap,
        order,
        node,
        exact,
        dom.node_affinity,
        dom.last_alloc_node,
    )
    .ok_or(AllocFail::NoMemory)?;
    dom.last_alloc_node = got;
    if dom.tot_pages + request > dom.max_pages {
        heap.free(mfn, order);
        return Err(AllocFail::OverMax);
    }
    charge_tot_pages(dom, outstanding_claims, request);
    Ok(mfn)
}

impl HostState {
    fn dom(&self, domid: DomId, function: &'static str) -> XcResult<&Domain> {
        self.domains
            .get(&domid)
            .ok_or_else(|| no_domain(function, domid))
    }

    fn dom_mut(&mut self, domid: DomId, function: &'static str) -> XcResult<&mut Domain> {
        self.domains
            .get_mut(&domid)
            .ok_or_else(|| no_domain(function, domid))
    }

    /// `domain_update_node_affinity()` for a domain with automatic affinity: the nodes of
    /// the pCPUs in any vCPU's hard affinity.
    fn update_node_affinity(&mut self, domid: DomId) {
        let (cpu_node, cpu_nodes) = (&self.cpu_node, self.cpu_nodes);
        let Some(dom) = self.domains.get_mut(&domid) else {
            return;
        };
        if !dom.auto_node_affinity || dom.vcpu_hard.is_empty() {
            return;
        }
        let mut mask = 0u64;
        for v in &dom.vcpu_hard {
            match v {
                None => mask |= cpu_nodes,
                Some(cpus) => {
                    for (c, _) in cpus.iter().enumerate().filter(|(_, &on)| on) {
                        mask |= 1 << cpu_node[c];
                    }
                }
            }
        }
        dom.node_affinity = mask;
    }

    pub(super) fn create_domain(&mut self, cfg: &DomainConfig) -> XcResult<DomId> {
        const F: &str = "xc_domain_create";
        let limit = if cfg.hvm { HVM_MAX_VCPUS } else { PV_MAX_VCPUS };
        if cfg.max_vcpus == 0 || cfg.max_vcpus > limit {
            return Err(XcError::errno_with(
                F,
                EINVAL,
                format!("max_vcpus {} not in 1..={limit}", cfg.max_vcpus),
            ));
        }
        if cfg.hap && !cfg.hvm {
            return Err(XcError::errno_with(F, EINVAL, "HAP needs an HVM container"));
        }
        let affinity = match &cfg.node_affinity {
            None => None,
            Some(nodes) => {
                const NF: &str = "xc_domain_node_setaffinity";
                let mut mask = 0u64;
                for &n in nodes {
                    if n >= MAX_NODES {
                        return Err(XcError::errno_with(
                            NF,
                            EINVAL,
                            format!("node {n} >= MAX_NUMNODES"),
                        ));
                    }
                    mask |= 1 << n;
                }
                // Xen keeps offline bits but refuses a mask with no online node.
                if mask & online_mask(self.heap.nr_nodes()) == 0 {
                    return Err(XcError::errno_with(
                        NF,
                        EINVAL,
                        "no online node in the affinity",
                    ));
                }
                Some(mask)
            }
        };
        // XEN_DOMCTL_createdomain: a free id in 1..DOMID_FIRST_RESERVED is taken as asked,
        // a used one is EEXIST, anything else means "pick one".
        let id = match cfg.domid {
            Some(id) if id.0 > 0 && id.0 < DOMID_FIRST_RESERVED => {
                if self.domains.contains_key(&id) {
                    return Err(XcError::errno_with(
                        F,
                        EEXIST,
                        format!("domain {id} exists"),
                    ));
                }
                id
            }
            _ => self.free_domid().ok_or_else(|| XcError::errno(F, ENOSPC))?,
        };
        let max_pages = (cfg.max_mem_kib / 4).min(u64::from(u32::MAX));
        let mut dom = Domain::new(id, cfg, max_pages, affinity);
        // Xen's shared info page is its own, outside the domain heap: give each domain a
        // frame past the host's memory.
        dom.shared_info_mfn = self.heap.total_pages() + u64::from(id.0);
        self.domains.insert(id, dom);
        self.update_node_affinity(id);
        Ok(id)
    }

    fn free_domid(&mut self) -> Option<DomId> {
        for _ in 1..DOMID_FIRST_RESERVED {
            let id = DomId(self.next_domid);
            self.next_domid = if self.next_domid + 1 >= DOMID_FIRST_RESERVED {
                1
            } else {
                self.next_domid + 1
            };
            if !self.domains.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    pub(super) fn destroy_domain(&mut self, domid: DomId) -> XcResult<()> {
        let dom = self
            .domains
            .remove(&domid)
            .ok_or_else(|| no_domain("xc_domain_destroy", domid))?;
        for (mfn, len) in dom.owned_blocks() {
            self.heap.free_range(mfn, len);
        }
        self.outstanding_claims -= dom.outstanding;
        Ok(())
    }

    pub(super) fn domain_getinfo(&self, domid: DomId) -> XcResult<DomainInfo> {
        let d = self.dom(domid, "xc_domain_getinfo")?;
        Ok(DomainInfo {
            hvm: d.hvm,
            hap: d.hap,
            max_vcpu_id: d.max_vcpus.saturating_sub(1),
            tot_pages: d.tot_pages,
            max_pages: d.max_pages,
            outstanding_pages: d.outstanding,
            shutdown_reason: d.shutdown_reason,
        })
    }

    pub(super) fn physinfo(&self) -> PhysInfo {
        PhysInfo {
            nr_cpus: self.spec.cpus,
            nr_nodes: self.spec.nodes,
            free_pages: self.heap.total_free(),
            outstanding_pages: self.outstanding_claims,
        }
    }

    pub(super) fn vcpu_setaffinity_hard(
        &mut self,
        domid: DomId,
        vcpu: u32,
        hard: &[bool],
    ) -> XcResult<()> {
        const F: &str = "xc_vcpu_setaffinity";
        let nr_cpus = self.spec.cpus as usize;
        let dom = self.dom_mut(domid, F)?;
        if vcpu >= dom.max_vcpus {
            return Err(XcError::errno_with(
                F,
                EINVAL,
                format!("vcpu {vcpu} >= max_vcpus {}", dom.max_vcpus),
            ));
        }
        // Bits beyond the host's CPUs are dropped (the mask is ANDed with the online CPUs).
        let mask: Vec<bool> = (0..nr_cpus)
            .map(|c| hard.get(c).copied().unwrap_or(false))
            .collect();
        if !mask.iter().any(|&b| b) {
            return Err(XcError::errno_with(
                F,
                EINVAL,
                "no online pCPU in the hard affinity",
            ));
        }
        dom.vcpu_hard[vcpu as usize] = if mask.iter().all(|&b| b) {
            None
        } else {
            Some(mask)
        };
        self.update_node_affinity(domid);
        Ok(())
    }

    pub(super) fn sched_get(&self, domid: DomId) -> XcResult<SchedCredit> {
        const F: &str = "xc_sched_credit_domain_get";
        let dom = self.dom(domid, F)?;
        if self.spec.sched != Scheduler::Credit {
            return Err(XcError::errno_with(
                F,
                EINVAL,
                "domain's pool does not run credit",
            ));
        }
        Ok(dom.sched)
    }

    pub(super) fn sched_set(&mut self, domid: DomId, params: SchedCredit) -> XcResult<()> {
        const F: &str = "xc_sched_credit_domain_set";
        let credit = self.spec.sched == Scheduler::Credit;
        let dom = self.dom_mut(domid, F)?;
        if !credit {
            return Err(XcError::errno_with(
                F,
                EINVAL,
                "domain's pool does not run credit",
            ));
        }
        // csched_dom_cntl(): weight 0 and cap 0xffff mean "leave unchanged".
        if params.weight != 0 {
            dom.sched.weight = params.weight;
        }
        if params.cap != u16::MAX {
            dom.sched.cap = params.cap;
        }
        Ok(())
    }

    pub(super) fn set_tsc_info(&mut self, domid: DomId, mode: u32) -> XcResult<()> {
        const F: &str = "xc_domain_set_tsc_info";
        let dom = self.dom_mut(domid, F)?;
        // 0 default, 1 always emulate, 2 never emulate; 3 (PVRDTSCP) was removed.
        if mode > 2 {
            return Err(XcError::errno_with(F, EINVAL, format!("TSC mode {mode}")));
        }
        dom.tsc_mode = Some(mode);
        Ok(())
    }

    pub(super) fn claim_pages(&mut self, domid: DomId, pages: u64) -> XcResult<()> {
        const F: &str = "xc_domain_claim_pages";
        let total_free = self.heap.total_free();
        let oc = &mut self.outstanding_claims;
        // XENMEM_claim_pages answers EINVAL, not ESRCH, for a missing domain.
        let dom = self
            .domains
            .get_mut(&domid)
            .ok_or_else(|| XcError::errno_with(F, EINVAL, format!("no domain {domid}")))?;
        if pages == 0 {
            *oc -= dom.outstanding;
            dom.outstanding = 0;
            return Ok(());
        }
        if dom.outstanding != 0 {
            return Err(XcError::errno_with(
                F,
                EINVAL,
                format!("domain already claims {} pages", dom.outstanding),
            ));
        }
        if pages <= dom.tot_pages || pages > dom.max_pages {
            let why = format!(
                "claim of {pages} pages with tot_pages {} max_pages {}",
                dom.tot_pages, dom.max_pages
            );
            return Err(XcError::errno_with(F, EINVAL, why));
        }
        let claim = pages - dom.tot_pages;
        let avail = total_free.saturating_sub(*oc);
        if claim > avail {
            return Err(XcError::errno_with(
                F,
                ENOMEM,
                format!("claim of {claim} pages, {avail} unclaimed"),
            ));
        }
        dom.outstanding = claim;
        *oc += claim;
        Ok(())
    }

    /// `p2m_pod_set_mem_target()` and `p2m_pod_set_cache_target()`.
    pub(super) fn set_pod_target(&mut self, domid: DomId, target: u64) -> XcResult<PodInfo> {
        const F: &str = "xc_domain_set_pod_target";
        let HostState {
            heap,
            domains,
            outstanding_claims,
            ..
        } = self;
        let dom = domains.get_mut(&domid).ok_or_else(|| no_domain(F, domid))?;
        if !dom.hvm {
            return Err(XcError::errno_with(F, EINVAL, "PoD needs an HVM container"));
        }
        if target > dom.max_pages {
            return Err(XcError::errno_with(
                F,
                EINVAL,
                format!("target {target} > max_pages {}", dom.max_pages),
            ));
        }
        let info = |d: &Domain| PodInfo {
            tot_pages: d.tot_pages,
            pod_cache_pages: d.pod_cache_pages(),
            pod_entries: d.pod_entries,
        };
        let populated = dom.tot_pages - dom.pod_cache_pages();
        // Fully populated, or a lower target: nothing to do (the balloon driver shrinks).
        if (populated > 0 && dom.pod_entries == 0) || target < dom.tot_pages {
            return Ok(info(dom));
        }
        let mut pod_target = target - populated;
        if populated > 0 && pod_target > dom.pod_entries {
            pod_target = dom.pod_entries;
        }
        while pod_target > dom.pod_cache_pages() {
            let mut order = if pod_target - dom.pod_cache_pages() >= SUPERPAGE_PAGES {
                9
            } else {
                0
            };
            let mfn = loop {
                match alloc_domheap(heap, outstanding_claims, dom, order, None, false) {
                    Ok(m) => break m,
                    Err(_) if order == 9 => order = 0,
                    Err(_) => {
                        let why = format!(
                            "PoD cache at {} of {pod_target} pages",
                            dom.pod_cache_pages()
                        );
                        return Err(XcError::errno_with(F, ENOMEM, why));
                    }
                }
            };
            if order == 9 {
                dom.pod_super.push_back(mfn);
            } else {
                dom.pod_single.push_back(mfn);
            }
        }
        // Shrinking: Xen only ASSERTs this cannot happen here; a release build frees.
        while pod_target < dom.pod_cache_pages() {
            let excess = dom.pod_cache_pages() - pod_target;
            if excess > SUPERPAGE_PAGES && !dom.pod_super.is_empty() {
                if let Some(m) = dom.pod_super.pop_front() {
                    heap.free(m, 9);
                    refund_tot_pages(dom, outstanding_claims, SUPERPAGE_PAGES);
                }
            } else {
                if dom.pod_single.is_empty() {
                    if let Some(sp) = dom.pod_super.pop_front() {
                        dom.pod_single.extend(sp..sp + SUPERPAGE_PAGES);
                    }
                }
                let Some(m) = dom.pod_single.pop_front() else {
                    break;
                };
                heap.free(m, 0);
                refund_tot_pages(dom, outstanding_claims, 1);
            }
        }
        Ok(info(dom))
    }

    /// `XENMEM_populate_physmap`: `partial` (fault injection) caps the extents attempted.
    pub(super) fn populate_physmap(
        &mut self,
        domid: DomId,
        order: u32,
        flags: MemFlags,
        extents: &mut [u64],
        partial: Option<usize>,
    ) -> XcResult<usize> {
        const F: &str = "xc_domain_populate_physmap";
        if order > MAX_ORDER {
            return Err(XcError::errno_with(
                F,
                EINVAL,
                format!("extent order {order} > {MAX_ORDER}"),
            ));
        }
        let caller = self.spec.caller;
        let HostState {
            heap,
            domains,
            outstanding_claims,
            ..
        } = self;
        let dom = domains.get_mut(&domid).ok_or_else(|| no_domain(F, domid))?;
        // Every early refusal below is Xen's silent "0 extents done".
        if extents.len() as u64 > u64::from(u32::MAX >> 6) {
            return Ok(0);
        }
        let pod = flags.populate_on_demand;
        if order > if pod { MAX_ORDER } else { caller.max_order() } {
            return Ok(0);
        }
        // propagate_node(): privileged callers' hints count; others' are ignored, and an
        // exact one makes the whole call fail.
        let (node, exact) = match flags.node {
            None => (None, false),
            Some(n) if caller.privileged() => {
                if n >= MAX_NODES {
                    return Ok(0);
                }
                (Some(n), flags.exact_node)
            }
            Some(_) if flags.exact_node => return Ok(0),
            Some(_) => (None, false),
        };
        let pages = 1u64 << order;
        let limit = partial.map_or(extents.len(), |p| p.min(extents.len()));
        let mut done = 0;
        for slot in extents.iter_mut().take(limit) {
            let gfn = *slot;
            let Some(end) = gfn.checked_add(pages) else {
                break;
            };
            if pod {
                // PV cannot take PoD (EINVAL); RAM in the range is EBUSY. Both stop here.
                if !dom.hvm || end > P2M_GFN_LIMIT || !dom.mark_pod(gfn, order) {
                    break;
                }
            } else {
                let Ok(mfn) = alloc_domheap(heap, outstanding_claims, dom, order, node, exact)
                else {
                    break;
                };
                if dom.hvm && end > P2M_GFN_LIMIT {
                    // p2m_set_entry() refuses the gfn after the page was assigned: it stays
                    // owned, unmapped, and the call stops.
                    dom.unmapped.push((mfn, pages));
                    break;
                }
                dom.map_ram(gfn, order, mfn);
                if !dom.hvm {
                    dom.pv_frames.insert(mfn, pages);
                    *slot = mfn;
                }
            }
            done += 1;
        }
        Ok(done)
    }

    pub(super) fn clear_pages(&mut self, domid: DomId, first: MapFrame, nr: u64) -> XcResult<()> {
        const F: &str = "xc_clear_domain_pages";
        let dom = self.dom_mut(domid, F)?;
        check_numbering(F, dom, first)?;
        let first = first.number();
        if nr == 0 {
            return Ok(());
        }
        let end = first
            .checked_add(nr)
            .ok_or_else(|| XcError::errno_with(F, EINVAL, "range wraps"))?;
        if !dom.hvm {
            // PV frames are machine frames.
            check_pv_frames(F, dom, first, end)?;
            for mfn in first..end {
                dom.memory.remove(&mfn);
            }
            return Ok(());
        }
        if let Some(hole) = dom.first_hole(first, end) {
            return Err(XcError::errno_with(
                F,
                EFAULT,
                format!("gfn {hole:#x} is not populated"),
            ));
        }
        for gfn in first..end {
            let mfn = dom.resolve(gfn).map_err(|_| pod_exhausted(F, gfn))?;
            dom.memory.remove(&mfn);
        }
        Ok(())
    }

    pub(super) fn write_guest(&mut self, domid: DomId, at: MapAddr, data: &[u8]) -> XcResult<()> {
        let dom = self.dom_mut(domid, MAP_FUNCTION)?;
        map_pages(dom, at, data.len(), |dom, mfn, off, range| {
            let bytes = &data[range];
            // A page never written reads as zeros: writing zeros there stores nothing, so a
            // restored guest costs the simulator only the pages that hold data.
            if dom.page(mfn).is_none() && bytes.iter().all(|&b| b == 0) {
                return;
            }
            dom.page_mut(mfn)[off..off + bytes.len()].copy_from_slice(bytes);
        })?;
        // A writable foreign mapping marks what it maps dirty, as the guest's own writes do.
        if dom.hvm && !data.is_empty() {
            let first = at.byte() >> PAGE_SHIFT;
            let end = (at.byte() + data.len() as u64).div_ceil(PAGE_BYTES);
            dom.mark_dirty(first, end);
        }
        Ok(())
    }

    pub(super) fn read_guest(&mut self, domid: DomId, at: MapAddr, buf: &mut [u8]) -> XcResult<()> {
        let dom = self.dom_mut(domid, MAP_FUNCTION)?;
        map_pages(dom, at, buf.len(), |dom, mfn, off, range| {
            match dom.page(mfn) {
                Some(page) => buf[range.clone()].copy_from_slice(&page[off..off + range.len()]),
                None => buf[range].fill(0),
            }
        })
    }

    fn hvm_dom_mut(&mut self, domid: DomId, function: &'static str) -> XcResult<&mut Domain> {
        let dom = self.dom_mut(domid, function)?;
        if !dom.hvm {
            return Err(XcError::errno_with(
                function,
                EINVAL,
                "not an HVM container",
            ));
        }
        Ok(dom)
    }

    pub(super) fn hvm_param_set(&mut self, domid: DomId, param: u32, value: u64) -> XcResult<()> {
        const F: &str = "xc_hvm_param_set";
        let dom = self.hvm_dom_mut(domid, F)?;
        if param >= HVM_NR_PARAMS {
            return Err(XcError::errno_with(
                F,
                EINVAL,
                format!("param {param} >= HVM_NR_PARAMS"),
            ));
        }
        dom.params.insert(param, value);
        Ok(())
    }

    pub(super) fn hvm_param_get(&mut self, domid: DomId, param: u32) -> XcResult<u64> {
        const F: &str = "xc_hvm_param_get";
        let dom = self.hvm_dom_mut(domid, F)?;
        if param >= HVM_NR_PARAMS {
            return Err(XcError::errno_with(
                F,
                EINVAL,
                format!("param {param} >= HVM_NR_PARAMS"),
            ));
        }
        Ok(dom.params.get(&param).copied().unwrap_or(0))
    }

    pub(super) fn set_memory_map(&mut self, domid: DomId, e820: &[E820Entry]) -> XcResult<()> {
        const F: &str = "xc_domain_set_memory_map";
        let dom = self.dom_mut(domid, F)?;
        if e820.len() > E820MAX {
            return Err(XcError::errno_with(
                F,
                EINVAL,
                format!("{} entries > E820MAX", e820.len()),
            ));
        }
        dom.e820 = Some(e820.to_vec());
        Ok(())
    }

    pub(super) fn set_time_offset(&mut self, domid: DomId, offset: i32) -> XcResult<()> {
        self.dom_mut(domid, "xc_domain_set_time_offset")?
            .time_offset = Some(offset);
        Ok(())
    }

    /// libxc refuses set bits it would have to truncate; Xen then clamps the featureset
    /// to the domain kind's maximum without complaint (`recalculate_cpuid_policy()`).
    pub(super) fn cpuid_apply_policy(
        &mut self,
        domid: DomId,
        policy: &CpuidPolicy,
    ) -> XcResult<()> {
        const F: &str = "xc_cpuid_apply_policy";
        let dom = self.dom_mut(domid, F)?;
        if policy
            .featureset
            .iter()
            .skip(FEATURESET_WORDS)
            .any(|&w| w != 0)
        {
            return Err(XcError::errno_with(
                F,
                EOPNOTSUPP,
                "featureset has set bits beyond the host's length",
            ));
        }
        let max = featureset(if dom.hvm {
            FeaturesetKind::HvmMax
        } else {
            FeaturesetKind::PvMax
        });
        let effective = (0..FEATURESET_WORDS)
            .map(|i| policy.featureset.get(i).copied().unwrap_or(0) & max[i])
            .collect();
        dom.cpuid = Some(policy.clone());
        dom.cpuid_effective = Some(effective);
        Ok(())
    }

    pub(super) fn gnttab_seed(&mut self, domid: DomId, seed: GrantSeed) -> XcResult<()> {
        const F: &str = "xc_dom_gnttab_seed";
        let dom = self.dom_mut(domid, F)?;
        check_numbering(F, dom, seed.console)?;
        check_numbering(F, dom, seed.xenstore)?;
        dom.grants = Some(seed);
        Ok(())
    }

    pub(super) fn set_boot_vcpu(&mut self, domid: DomId, vcpu: HvmBootVcpu) -> XcResult<()> {
        self.hvm_dom_mut(domid, "xc_domain_hvm_setcontext")?
            .boot_vcpu = Some(vcpu);
        Ok(())
    }

    pub(super) fn decrease_reservation(&mut self, domid: DomId, gfns: &[u64]) -> XcResult<usize> {
        const F: &str = "xc_domain_decrease_reservation";
        let HostState {
            heap,
            domains,
            outstanding_claims,
            ..
        } = self;
        let dom = domains.get_mut(&domid).ok_or_else(|| no_domain(F, domid))?;
        if !dom.hvm {
            return Err(XcError::errno_with(
                F,
                EINVAL,
                "the simulated host models this for translated (HVM/PVH) domains only",
            ));
        }
        let mut done = 0;
        for &gfn in gfns {
            // guest_remove_page(): RAM goes back to the heap, a PoD entry is dropped; a gfn
            // with neither stops the call.
            match dom.remove_page(gfn) {
                Some(Some(mfn)) => {
                    heap.free(mfn, 0);
                    refund_tot_pages(dom, outstanding_claims, 1);
                }
                Some(None) => {}
                None => break,
            }
            done += 1;
        }
        Ok(done)
    }

    pub(super) fn logdirty(&mut self, domid: DomId, enable: bool) -> XcResult<()> {
        const F: &str = "xc_shadow_control";
        let dom = self.hvm_dom_mut(domid, F)?;
        match (enable, dom.dirty.is_some()) {
            // paging_log_dirty_enable(): EINVAL when it is already on.
            (true, true) => Err(XcError::errno_with(F, EINVAL, "log-dirty is already on")),
            (true, false) => {
                dom.dirty = Some(BTreeSet::new());
                Ok(())
            }
            (false, _) => {
                dom.dirty = None;
                Ok(())
            }
        }
    }

    pub(super) fn logdirty_clean(
        &mut self,
        domid: DomId,
        bitmap: &mut [u64],
        nr_pfns: u64,
    ) -> XcResult<u64> {
        const F: &str = "xc_shadow_control";
        let dom = self.hvm_dom_mut(domid, F)?;
        if (bitmap.len() as u64).saturating_mul(64) < nr_pfns {
            return Err(XcError::errno_with(
                F,
                EINVAL,
                format!("a bitmap of {} words for {nr_pfns} pfns", bitmap.len()),
            ));
        }
        let Some(dirty) = dom.dirty.as_mut() else {
            return Err(XcError::errno_with(F, EINVAL, "log-dirty is off"));
        };
        bitmap.fill(0);
        let later = dirty.split_off(&nr_pfns);
        let count = dirty.len() as u64;
        for &gfn in dirty.iter() {
            bitmap[usize_of(gfn / 64)] |= 1 << (gfn % 64);
        }
        *dirty = later;
        Ok(count)
    }

    pub(super) fn pfn_types(&mut self, domid: DomId, pfns: &[u64]) -> XcResult<Vec<u32>> {
        const F: &str = "xc_get_pfn_type_batch";
        // getpageframeinfo3: at most 1024 per call.
        if pfns.len() > 1024 {
            return Err(XcError::errno_with(
                F,
                libc::E2BIG,
                format!("{} pfns", pfns.len()),
            ));
        }
        let dom = self.hvm_dom_mut(domid, F)?;
        Ok(pfns
            .iter()
            .map(|&gfn| match dom.resolve(gfn) {
                Ok(_) => pfinfo::NOTAB,
                // Not mapped, or a PoD entry the cache could not back.
                Err(_) => pfinfo::XTAB,
            })
            .collect())
    }

    pub(super) fn maximum_gpfn(&self, domid: DomId) -> XcResult<u64> {
        Ok(self
            .dom(domid, "xc_domain_maximum_gpfn")?
            .gfn_end()
            .saturating_sub(1))
    }

    pub(super) fn get_tsc_info(&self, domid: DomId) -> XcResult<TscInfo> {
        let dom = self.dom(domid, "xc_domain_get_tsc_info")?;
        Ok(dom.tsc.unwrap_or(TscInfo {
            mode: dom.tsc_mode.unwrap_or(0),
            ..TscInfo::default()
        }))
    }

    pub(super) fn restore_tsc_info(&mut self, domid: DomId, info: TscInfo) -> XcResult<()> {
        self.set_tsc_info(domid, info.mode)?;
        self.dom_mut(domid, "xc_domain_set_tsc_info")?.tsc = Some(info);
        Ok(())
    }

    pub(super) fn hvm_getcontext(&self, domid: DomId) -> XcResult<Vec<u8>> {
        const F: &str = "xc_domain_hvm_getcontext";
        let dom = self.dom(domid, F)?;
        if !dom.hvm {
            return Err(XcError::errno_with(F, EINVAL, "not an HVM container"));
        }
        Ok(dom.hvm_context.clone().unwrap_or_else(hvm_context::minimal))
    }

    pub(super) fn hvm_setcontext(&mut self, domid: DomId, context: &[u8]) -> XcResult<()> {
        const F: &str = "xc_domain_hvm_setcontext";
        let dom = self.hvm_dom_mut(domid, F)?;
        hvm_context::check(context).map_err(|why| XcError::errno_with(F, EINVAL, why))?;
        dom.hvm_context = Some(context.to_vec());
        Ok(())
    }

    pub(super) fn set_cpu_policy(
        &mut self,
        domid: DomId,
        leaves: &[CpuidLeaf],
        msrs: &[MsrEntry],
    ) -> XcResult<()> {
        const F: &str = "xc_set_domain_cpu_policy";
        let dom = self.dom_mut(domid, F)?;
        // Xen takes at most CPUID_MAX_SERIALISED_LEAVES and MSR_MAX_SERIALISED_ENTRIES and
        // says E2BIG past them (xen/include/xen/lib/x86/cpu-policy.h).
        if leaves.len() > MAX_POLICY_LEAVES || msrs.len() > MAX_POLICY_MSRS {
            return Err(XcError::errno_with(
                F,
                libc::E2BIG,
                format!("{} leaves and {} MSRs", leaves.len(), msrs.len()),
            ));
        }
        dom.cpu_policy = Some((leaves.to_vec(), msrs.to_vec()));
        Ok(())
    }

    /// The policy a restore set, else the featureset the domain got, as the leaves its words
    /// come from (xen-project/xen `xen/include/public/arch-x86/cpufeatureset.h`: words 0 to 9
    /// are 1.edx, 1.ecx, e1.edx, e1.ecx, Da1.eax, 7[0].ebx, 7[0].ecx, e7.edx, e8.ebx,
    /// 7[0].edx) and no MSRs beyond `MSR_INTEL_PLATFORM_INFO`. A domain with neither has
    /// no policy yet: EINVAL, where Xen would give the default one.
    pub(super) fn get_cpu_policy(&self, domid: DomId) -> XcResult<(Vec<CpuidLeaf>, Vec<MsrEntry>)> {
        const F: &str = "xc_get_domain_cpu_policy";
        const NO_SUBLEAF: u32 = u32::MAX;
        let dom = self.dom(domid, F)?;
        if let Some(policy) = &dom.cpu_policy {
            return Ok(policy.clone());
        }
        let Some(fs) = &dom.cpuid_effective else {
            return Err(XcError::errno_with(F, EINVAL, "no CPUID policy applied"));
        };
        let w = |i: usize| fs.get(i).copied().unwrap_or(0);
        let leaf = |leaf, subleaf, a, b, c, d| CpuidLeaf {
            leaf,
            subleaf,
            regs: [a, b, c, d],
        };
        let leaves = vec![
            leaf(1, NO_SUBLEAF, 0, 0, w(1), w(0)),
            leaf(7, 0, 0, w(5), w(6), w(9)),
            leaf(0xd, 1, w(4), 0, 0, 0),
            leaf(0x8000_0001, NO_SUBLEAF, 0, 0, w(3), w(2)),
            leaf(0x8000_0007, NO_SUBLEAF, 0, 0, 0, w(7)),
            leaf(0x8000_0008, NO_SUBLEAF, 0, w(8), 0, 0),
        ];
        let msrs = vec![MsrEntry {
            index: 0xce,
            flags: 0,
            value: 0,
        }];
        Ok((leaves, msrs))
    }

    pub(super) fn pages_by_node(&self, domid: DomId) -> XcResult<Vec<u64>> {
        const F: &str = "xc_domain_get_node_pages";
        if !self.spec.node_pages {
            return Err(XcError::errno(F, ENOSYS));
        }
        let dom = self.dom(domid, F)?;
        let mut out = vec![0; self.heap.nr_nodes()];
        for (mfn, len) in dom.owned_blocks() {
            if let Some(n) = self.heap.node_of(mfn) {
                out[n] += len;
            }
        }
        Ok(out)
    }
}

/// PV: every machine frame in `[first, end)` must be the domain's (a foreign map of
/// another domain's frame fails in Xen).
/// Xen's answer for a domain that does not exist.
fn no_domain(function: &'static str, domid: DomId) -> XcError {
    XcError::errno_with(function, ESRCH, format!("no domain {domid}"))
}

/// What the simulated host calls a foreign mapping (the real backend's `xc_map_foreign_range`).
const MAP_FUNCTION: &str = "xc_map_foreign_range";

/// Stricter than Xen, which takes any number: a frame numbered for the other kind of domain
/// (a gfn for a PV domain, an MFN for a translated one) is EINVAL, so that a builder that
/// confuses the two fails here instead of writing to the wrong page.
fn check_numbering(function: &'static str, dom: &Domain, frame: MapFrame) -> XcResult<()> {
    if frame.is_machine() == dom.hvm {
        let kind = if dom.hvm {
            "translated: its frames are gfns"
        } else {
            "PV: its frames are mfns"
        };
        return Err(XcError::errno_with(
            function,
            EINVAL,
            format!("d{} is {kind}, not {frame}", dom.id),
        ));
    }
    Ok(())
}

/// A foreign mapping of `len` bytes at `at` (a gfn address for HVM, an MFN one for PV): its
/// frames checked as Xen checks them, then `f(domain, mfn, offset in the page, byte range of
/// the caller's buffer)` page by page.
fn map_pages(
    dom: &mut Domain,
    at: MapAddr,
    len: usize,
    mut f: impl FnMut(&mut Domain, u64, usize, std::ops::Range<usize>),
) -> XcResult<()> {
    const F: &str = MAP_FUNCTION;
    check_numbering(F, dom, at.frame())?;
    let paddr = at.byte();
    let (g0, g1) = frames(F, paddr, len)?;
    if !dom.hvm {
        check_pv_frames(F, dom, g0, g1)?;
    } else if let Some(hole) = dom.first_hole(g0, g1) {
        return Err(XcError::errno_with(
            F,
            EFAULT,
            format!("gfn {hole:#x} is not populated"),
        ));
    }
    let mut done = 0usize;
    while done < len {
        let addr = paddr + done as u64;
        let gfn = addr >> PAGE_SHIFT;
        let off = (addr % PAGE_BYTES) as usize;
        let n = (PAGE_USIZE - off).min(len - done);
        let mfn = if dom.hvm {
            dom.resolve(gfn).map_err(|_| pod_exhausted(F, gfn))?
        } else {
            gfn
        };
        f(dom, mfn, off, done..done + n);
        done += n;
    }
    Ok(())
}

fn check_pv_frames(function: &'static str, dom: &Domain, first: u64, end: u64) -> XcResult<()> {
    match (first..end).find(|&m| !dom.pv_owns(m)) {
        Some(m) => Err(XcError::errno_with(
            function,
            EFAULT,
            format!("mfn {m:#x} does not belong to d{}", dom.id),
        )),
        None => Ok(()),
    }
}

/// `_PAGE_PRESENT`, `_PAGE_RW`, `_PAGE_PSE`.
const PTE_PRESENT: u64 = 1;
const PTE_RW: u64 = 2;
const PTE_PSE: u64 = 0x80;
/// Address bits of a PTE (52-bit physical addresses).
const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;
/// L4 slots Xen reserves for itself in a 64-bit PV guest (`0xffff800000000000` up to
/// `0xffff880000000000`).
const XEN_L4_SLOTS: std::ops::Range<usize> = 256..272;

/// The 512 entries of a page-table page (zeros if never written).
fn table_entries(dom: &Domain, mfn: u64) -> [u64; 512] {
    let mut out = [0u64; 512];
    if let Some(page) = dom.page(mfn) {
        for (i, e) in out.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&page[i * 8..i * 8 + 8]);
            *e = u64::from_le_bytes(b);
        }
    }
    out
}

/// What Xen checks when it pins (or loads into CR3) an L4 of a 64-bit PV guest: every
/// table reached is the domain's, no superpages, nothing in Xen's slots, and no L1 entry
/// maps a page-table frame writable (Xen's page types forbid it).
fn validate_l4(dom: &Domain, l4: u64) -> Result<(), String> {
    let mut tables = std::collections::BTreeSet::from([l4]);
    let mut level_tables = vec![l4];
    for level in (2..=4).rev() {
        let mut next = Vec::new();
        for &t in &level_tables {
            for (i, e) in table_entries(dom, t).into_iter().enumerate() {
                if e & PTE_PRESENT == 0 {
                    continue;
                }
                if level == 4 && XEN_L4_SLOTS.contains(&i) {
                    return Err(format!("L4 slot {i} is Xen's"));
                }
                if e & PTE_PSE != 0 {
                    return Err(format!("L{level} table {t:#x} entry {i} is a superpage"));
                }
                let target = (e & PTE_ADDR) >> 12;
                if !dom.pv_owns(target) || target == dom.shared_info_mfn {
                    return Err(format!(
                        "L{level} table {t:#x} entry {i} points at mfn {target:#x}, not the domain's"
                    ));
                }
                if tables.insert(target) {
                    next.push(target);
                }
            }
        }
        level_tables = next;
    }
    for &t in &level_tables {
        for (i, e) in table_entries(dom, t).into_iter().enumerate() {
            if e & PTE_PRESENT == 0 {
                continue;
            }
            let target = (e & PTE_ADDR) >> 12;
            if !dom.pv_owns(target) {
                return Err(format!(
                    "L1 table {t:#x} entry {i} maps mfn {target:#x}, not the domain's"
                ));
            }
            if e & PTE_RW != 0 && tables.contains(&target) {
                return Err(format!(
                    "L1 table {t:#x} entry {i} maps page-table frame {target:#x} writable"
                ));
            }
        }
    }
    Ok(())
}

impl HostState {
    fn pv_dom_mut(&mut self, domid: DomId, function: &'static str) -> XcResult<&mut Domain> {
        let dom = self.dom_mut(domid, function)?;
        if dom.hvm {
            return Err(XcError::errno_with(function, EINVAL, "not a PV domain"));
        }
        Ok(dom)
    }

    /// `XEN_DOMCTL_set_address_size`: 64 is native; 32-bit PV is not offered by this host
    /// (Xen 4.17 built without `CONFIG_PV32` answers the same).
    pub(super) fn set_address_size(&mut self, domid: DomId, bits: u32) -> XcResult<()> {
        const F: &str = "XEN_DOMCTL_set_address_size";
        let dom = self.dom_mut(domid, F)?;
        if dom.hvm {
            return Err(XcError::errno_with(F, EOPNOTSUPP, "HVM domain"));
        }
        match bits {
            64 => {
                dom.address_size = 64;
                Ok(())
            }
            32 => Err(XcError::errno_with(F, EOPNOTSUPP, "no 32-bit PV support")),
            _ => Err(XcError::errno_with(F, EINVAL, format!("{bits}-bit guest"))),
        }
    }

    /// `XEN_DOMCTL_get_address_size` turned into the protocol name.
    pub(super) fn native_protocol(&self, domid: DomId) -> XcResult<String> {
        let dom = self.dom(domid, "xc_domain_get_native_protocol")?;
        Ok(if dom.address_size == 32 {
            "x86_32-abi"
        } else {
            "x86_64-abi"
        }
        .into())
    }

    pub(super) fn shared_info_frame(&self, domid: DomId) -> XcResult<u64> {
        Ok(self.dom(domid, "xc_domain_getinfo")?.shared_info_mfn)
    }

    /// `MMUEXT_PIN_L4_TABLE`: validate the tree, then pin. Pinning twice is EINVAL.
    pub(super) fn pin_l4(&mut self, domid: DomId, mfn: u64) -> XcResult<()> {
        const F: &str = "xc_mmuext_op";
        let dom = self.pv_dom_mut(domid, F)?;
        if !dom.pv_owns(mfn) || mfn == dom.shared_info_mfn {
            return Err(XcError::errno_with(
                F,
                EINVAL,
                format!("mfn {mfn:#x} does not belong to d{domid}"),
            ));
        }
        if dom.pinned_l4.is_some() {
            return Err(XcError::errno_with(F, EINVAL, "an L4 is already pinned"));
        }
        validate_l4(dom, mfn).map_err(|why| XcError::errno_with(F, EINVAL, why))?;
        dom.pinned_l4 = Some(mfn);
        Ok(())
    }

    /// `XEN_DOMCTL_hypercall_init`: Xen writes a 64-bit PV hypercall page (one 32-byte stub
    /// per hypercall: `push %rcx; push %r11; mov $nr, %eax; syscall; pop %r11; pop %rcx;
    /// ret`).
    pub(super) fn hypercall_init(&mut self, domid: DomId, mfn: u64) -> XcResult<()> {
        const F: &str = "XEN_DOMCTL_hypercall_init";
        let dom = self.pv_dom_mut(domid, F)?;
        if !dom.pv_owns(mfn) || mfn == dom.shared_info_mfn {
            return Err(XcError::errno_with(
                F,
                EINVAL,
                format!("mfn {mfn:#x} does not belong to d{domid}"),
            ));
        }
        let page = dom.page_mut(mfn);
        page.fill(0xcc);
        for (nr, stub) in (0u32..).zip(page.chunks_mut(32)) {
            let nr = nr.to_le_bytes();
            let code = [
                0x51, 0x41, 0x53, 0xb8, nr[0], nr[1], nr[2], nr[3], 0x0f, 0x05, 0x41, 0x5b, 0x59,
                0xc3,
            ];
            stub[..code.len()].copy_from_slice(&code);
        }
        dom.hypercall_page = Some(mfn);
        Ok(())
    }

    /// `XEN_DOMCTL_setvcpucontext` for a 64-bit PV vCPU: the CR3 frame must be a valid L4.
    pub(super) fn set_pv_vcpu(
        &mut self,
        domid: DomId,
        vcpu: u32,
        ctx: PvVcpuContext,
    ) -> XcResult<()> {
        const F: &str = "xc_vcpu_setcontext";
        let dom = self.pv_dom_mut(domid, F)?;
        if vcpu >= dom.max_vcpus {
            return Err(XcError::errno_with(
                F,
                EINVAL,
                format!("vcpu {vcpu} >= max_vcpus {}", dom.max_vcpus),
            ));
        }
        let l4 = ctx.cr3 >> 12;
        if ctx.cr3 & 0xfff != 0 || !dom.pv_owns(l4) || l4 == dom.shared_info_mfn {
            return Err(XcError::errno_with(
                F,
                EINVAL,
                format!("cr3 {:#x} is not one of d{domid}'s frames", ctx.cr3),
            ));
        }
        if dom.pinned_l4 != Some(l4) {
            validate_l4(dom, l4).map_err(|why| XcError::errno_with(F, EINVAL, why))?;
        }
        dom.pv_vcpu = Some(ctx);
        Ok(())
    }
}

/// The guest frames `[first, end)` a byte range touches (empty for an empty range).
fn frames(function: &'static str, paddr: u64, len: usize) -> XcResult<(u64, u64)> {
    if len == 0 {
        return Ok((0, 0));
    }
    let last = paddr
        .checked_add(len as u64 - 1)
        .ok_or_else(|| XcError::errno_with(function, EFAULT, "range wraps the address space"))?;
    Ok((paddr >> PAGE_SHIFT, (last >> PAGE_SHIFT) + 1))
}

fn pod_exhausted(function: &'static str, gfn: u64) -> XcError {
    XcError::errno_with(
        function,
        EFAULT,
        format!("out of PoD memory backing gfn {gfn:#x}: Xen would crash the domain"),
    )
}
