//! Per-domain state of the simulated host: page accounting, the p2m, the PoD cache and
//! everything the builder sets through the trait.

use crate::hypervisor::{
    CpuidLeaf, CpuidPolicy, HvmBootVcpu, MsrEntry, PvVcpuContext, SchedCredit, TscInfo,
};
use crate::types::{DomId, E820Entry, MapFrame, PAGE_USIZE};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Pages in a PoD superpage cache entry (`SUPERPAGE_PAGES`).
pub const SUPERPAGE_PAGES: u64 = 512;

/// What the toolstack asks for when it creates a domain (`xc_domain_create` plus
/// `xc_domain_setmaxmem` and `xc_domain_node_setaffinity`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainConfig {
    /// The domid to create; `None` (or, as in Xen, 0 or a reserved id) lets the host pick
    /// the next free one.
    pub domid: Option<DomId>,
    /// HVM container (HVM or PVH); false = PV.
    pub hvm: bool,
    /// Hardware-assisted paging (HVM only).
    pub hap: bool,
    /// vCPUs the domain may have.
    pub max_vcpus: u32,
    /// `XEN_DOMCTL_max_mem`, KiB; `max_pages = max_mem_kib / 4`.
    pub max_mem_kib: u64,
    /// Explicit node affinity; `None` = automatic (derived from vCPU hard affinity).
    pub node_affinity: Option<Vec<u32>>,
}

impl DomainConfig {
    /// An HVM/PVH domain with HAP and automatic node affinity.
    pub fn hvm(max_mem_kib: u64, max_vcpus: u32) -> Self {
        DomainConfig {
            domid: None,
            hvm: true,
            hap: true,
            max_vcpus,
            max_mem_kib,
            node_affinity: None,
        }
    }

    /// The container `hvm` asks for (HVM/PVH with HAP, or PV), with domid `domid`.
    pub fn of_kind(hvm: bool, domid: DomId, max_mem_kib: u64, max_vcpus: u32) -> Self {
        let cfg = if hvm {
            DomainConfig::hvm(max_mem_kib, max_vcpus)
        } else {
            DomainConfig::pv(max_mem_kib, max_vcpus)
        };
        DomainConfig {
            domid: Some(domid),
            ..cfg
        }
    }

    /// A PV domain with automatic node affinity.
    pub fn pv(max_mem_kib: u64, max_vcpus: u32) -> Self {
        DomainConfig {
            domid: None,
            hvm: false,
            hap: false,
            max_vcpus,
            max_mem_kib,
            node_affinity: None,
        }
    }
}

/// What a guest frame is backed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum GfnState {
    /// RAM at machine frame `mfn`.
    Ram {
        /// The machine frame.
        mfn: u64,
    },
    /// A populate-on-demand entry: backed on first access from the PoD cache.
    Pod,
}

/// One p2m extent: `pages` guest frames from `gfn`, as created by one populate extent of
/// `order` (possibly trimmed later by an overlapping populate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct P2mExtent {
    /// First guest frame.
    pub gfn: u64,
    /// Guest frames covered.
    pub pages: u64,
    /// Order of the populate extent that created it.
    pub order: u32,
    /// First machine frame (frames are contiguous); `None` for PoD.
    pub mfn: Option<u64>,
}

/// The grant entries `xc_dom_gnttab_seed` wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantSeed {
    /// Entry 0: the console ring's frame.
    pub console: MapFrame,
    /// Entry 1: the xenstore ring's frame.
    pub xenstore: MapFrame,
    /// Backend of entry 0.
    pub console_domid: DomId,
    /// Backend of entry 1.
    pub xenstore_domid: DomId,
}

/// A copy of one domain's state, for tests and reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainSnapshot {
    /// The domain.
    pub domid: DomId,
    /// HVM container.
    pub hvm: bool,
    /// HAP.
    pub hap: bool,
    /// vCPUs.
    pub max_vcpus: u32,
    /// Pages owned (mapped RAM, re-pointed RAM, PoD cache).
    pub tot_pages: u64,
    /// `max_pages`.
    pub max_pages: u64,
    /// Outstanding claim, pages.
    pub outstanding_pages: u64,
    /// Nodes in the domain's node affinity.
    pub node_affinity: Vec<u32>,
    /// Whether the affinity follows the vCPUs' hard affinity.
    pub auto_node_affinity: bool,
    /// Node of the last allocation (`d->last_alloc_node`).
    pub last_alloc_node: u32,
    /// RAM pages mapped in the p2m, by the order of the populate extent that mapped them.
    pub ram_pages_by_order: BTreeMap<u32, u64>,
    /// PoD p2m entries (pages), by populate order.
    pub pod_pages_by_order: BTreeMap<u32, u64>,
    /// Owned pages per node (mapped, re-pointed and PoD cache).
    pub pages_by_node: Vec<u64>,
    /// Pages in the PoD cache.
    pub pod_cache_pages: u64,
    /// Outstanding PoD entries, pages.
    pub pod_entries: u64,
    /// Guest frames populated again while already populated (0 for a correct builder).
    pub repopulated_pages: u64,
    /// Owned pages no gfn maps any more (re-pointed by a second populate).
    pub unmapped_pages: u64,
    /// HVM params set.
    pub hvm_params: BTreeMap<u32, u64>,
    /// The memory map, if set.
    pub e820: Option<Vec<E820Entry>>,
    /// Per vCPU: the pCPUs in its hard affinity.
    pub vcpu_hard_affinity: Vec<Vec<u32>>,
    /// Credit scheduler parameters.
    pub sched: SchedCredit,
    /// TSC mode, if set.
    pub tsc_mode: Option<u32>,
    /// The whole TSC state a restore set, if any.
    pub tsc_info: Option<TscInfo>,
    /// The HVM context loaded, if any.
    pub hvm_context: Option<Vec<u8>>,
    /// The CPU policy a restore set (leaves, MSRs), if any.
    pub cpu_policy: Option<(Vec<CpuidLeaf>, Vec<MsrEntry>)>,
    /// Time offset, seconds, if set.
    pub time_offset_s: Option<i32>,
    /// The CPUID policy applied, as the toolstack passed it, if any.
    pub cpuid_policy: Option<CpuidPolicy>,
    /// The featureset the domain got: the requested one clamped to the domain kind's
    /// maximum, as `recalculate_cpuid_policy()` does.
    pub cpuid_effective: Option<Vec<u32>>,
    /// The seeded grant entries, if any.
    pub grants: Option<GrantSeed>,
    /// The HVM boot vCPU context, if set.
    pub boot_vcpu: Option<HvmBootVcpu>,
    /// Guest pages with stored (written, non-cleared) contents.
    pub written_pages: u64,
    /// Guest address size, bits (`XEN_DOMCTL_set_address_size`; 64 until set).
    pub address_size: u32,
    /// Machine frame of the shared info page (outside the heap; Xen's own page).
    pub shared_info_mfn: u64,
    /// PV: the pinned L4 page table, if any.
    pub pinned_l4_mfn: Option<u64>,
    /// PV: vCPU 0's context, if set.
    pub pv_vcpu: Option<PvVcpuContext>,
    /// PV: the frame Xen wrote the hypercall page into, if any.
    pub hypercall_page_mfn: Option<u64>,
}

/// One p2m entry: `len` frames from its key; RAM from `mfn` or PoD.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(super) struct P2mEntry {
    pub len: u64,
    pub order: u32,
    pub mfn: Option<u64>,
}

type Page = Box<[u8; PAGE_USIZE]>;

/// A domain on the simulated host.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Domain {
    pub id: DomId,
    pub hvm: bool,
    pub hap: bool,
    pub max_vcpus: u32,
    pub tot_pages: u64,
    pub max_pages: u64,
    pub outstanding: u64,
    pub auto_node_affinity: bool,
    /// Bit n = node n (at most 64 nodes, `MAX_NUMNODES`).
    pub node_affinity: u64,
    pub last_alloc_node: u32,
    /// gfn → entry; entries never overlap.
    pub p2m: BTreeMap<u64, P2mEntry>,
    /// Owned RAM no gfn maps any more: `(mfn, pages)`.
    pub unmapped: Vec<(u64, u64)>,
    pub pod_super: VecDeque<u64>,
    pub pod_single: VecDeque<u64>,
    pub pod_entries: u64,
    pub repopulated_pages: u64,
    pub params: HashMap<u32, u64>,
    pub e820: Option<Vec<E820Entry>>,
    /// Per vCPU; `None` = every pCPU (the default).
    pub vcpu_hard: Vec<Option<Vec<bool>>>,
    pub sched: SchedCredit,
    pub tsc_mode: Option<u32>,
    /// Everything `xc_domain_set_tsc_info` set by a restore.
    pub tsc: Option<TscInfo>,
    pub time_offset: Option<i32>,
    /// The HVM context loaded by `xc_domain_hvm_setcontext`.
    pub hvm_context: Option<Vec<u8>>,
    /// The CPUID leaves and MSRs `xc_set_domain_cpu_policy` set.
    pub cpu_policy: Option<(Vec<CpuidLeaf>, Vec<MsrEntry>)>,
    pub cpuid: Option<CpuidPolicy>,
    pub cpuid_effective: Option<Vec<u32>>,
    pub grants: Option<GrantSeed>,
    pub boot_vcpu: Option<HvmBootVcpu>,
    /// Contents of written pages, by machine frame (so a re-pointed gfn reads its new,
    /// zeroed page).
    #[serde(with = "super::persist::pages")]
    pub memory: HashMap<u64, Page>,
    /// PV: every block of machine frames ever assigned, `mfn -> pages` (for access by MFN).
    pub pv_frames: BTreeMap<u64, u64>,
    pub address_size: u32,
    pub shared_info_mfn: u64,
    pub pinned_l4: Option<u64>,
    pub pv_vcpu: Option<PvVcpuContext>,
    pub hypercall_page: Option<u64>,
    /// Log-dirty tracking: the gfns written since it began or since the last clean; `None`
    /// while it is off. Bounded by the pages the domain has.
    pub dirty: Option<BTreeSet<u64>>,
    /// `SHUTDOWN_*` once the toolstack shut the domain down (suspended it, for a save).
    pub shutdown_reason: Option<u32>,
}

impl Domain {
    pub fn new(id: DomId, cfg: &DomainConfig, max_pages: u64, node_affinity: Option<u64>) -> Self {
        Domain {
            id,
            hvm: cfg.hvm,
            hap: cfg.hap,
            max_vcpus: cfg.max_vcpus,
            tot_pages: 0,
            max_pages,
            outstanding: 0,
            auto_node_affinity: node_affinity.is_none(),
            node_affinity: node_affinity.unwrap_or(u64::MAX),
            last_alloc_node: 0,
            p2m: BTreeMap::new(),
            unmapped: Vec::new(),
            pod_super: VecDeque::new(),
            pod_single: VecDeque::new(),
            pod_entries: 0,
            repopulated_pages: 0,
            params: HashMap::new(),
            e820: None,
            vcpu_hard: vec![None; cfg.max_vcpus as usize],
            sched: SchedCredit {
                weight: 256,
                cap: 0,
            },
            tsc_mode: None,
            tsc: None,
            hvm_context: None,
            cpu_policy: None,
            time_offset: None,
            cpuid: None,
            cpuid_effective: None,
            grants: None,
            boot_vcpu: None,
            memory: HashMap::new(),
            pv_frames: BTreeMap::new(),
            address_size: 64,
            shared_info_mfn: 0,
            pinned_l4: None,
            pv_vcpu: None,
            hypercall_page: None,
            dirty: None,
            shutdown_reason: None,
        }
    }

    /// PV: whether machine frame `mfn` may be mapped by the toolstack for this domain (one
    /// of its pages, or its shared info page).
    pub fn pv_owns(&self, mfn: u64) -> bool {
        mfn == self.shared_info_mfn
            || self
                .pv_frames
                .range(..=mfn)
                .next_back()
                .is_some_and(|(&start, &len)| mfn < start + len)
    }

    /// Pages in the PoD cache (`p2m->pod.count`).
    pub fn pod_cache_pages(&self) -> u64 {
        self.pod_super.len() as u64 * SUPERPAGE_PAGES + self.pod_single.len() as u64
    }

    /// Starts of the entries overlapping `[gfn, end)`, highest first.
    fn overlapping(&self, gfn: u64, end: u64) -> Vec<u64> {
        self.p2m
            .range(..end)
            .rev()
            .take_while(|(&s, e)| s + e.len > gfn)
            .map(|(&s, _)| s)
            .collect()
    }

    /// Whether any frame in `[gfn, end)` is RAM.
    pub fn has_ram_in(&self, gfn: u64, end: u64) -> bool {
        self.p2m
            .range(..end)
            .rev()
            .take_while(|(&s, e)| s + e.len > gfn)
            .any(|(_, e)| e.mfn.is_some())
    }

    /// Unmap `[gfn, end)`: RAM stays owned (Xen only invalidates the M2P of a re-pointed
    /// page), PoD entries are dropped. Returns the frames that were mapped.
    fn carve(&mut self, gfn: u64, end: u64) -> u64 {
        let mut replaced = 0;
        for start in self.overlapping(gfn, end) {
            let Some(e) = self.p2m.remove(&start) else {
                continue;
            };
            let e_end = start + e.len;
            let (lo, hi) = (start.max(gfn), e_end.min(end));
            if start < gfn {
                self.p2m.insert(
                    start,
                    P2mEntry {
                        len: gfn - start,
                        ..e
                    },
                );
            }
            if e_end > end {
                let mfn = e.mfn.map(|m| m + (end - start));
                self.p2m.insert(
                    end,
                    P2mEntry {
                        len: e_end - end,
                        mfn,
                        ..e
                    },
                );
            }
            let n = hi - lo;
            match e.mfn {
                Some(m) => self.unmapped.push((m + (lo - start), n)),
                None => self.pod_entries -= n,
            }
            replaced += n;
        }
        replaced
    }

    /// Take `gfn` out of the p2m (`guest_remove_page()`): `Some(Some(mfn))` for RAM, whose
    /// frame is no longer the domain's, `Some(None)` for a dropped PoD entry, `None` when
    /// `gfn` is neither.
    pub fn remove_page(&mut self, gfn: u64) -> Option<Option<u64>> {
        let state = self.state_of(gfn)?;
        self.carve(gfn, gfn + 1);
        match state {
            GfnState::Ram { mfn } => {
                // carve() keeps the frame owned, unmapped: it is given back instead.
                self.unmapped.retain(|&block| block != (mfn, 1));
                self.memory.remove(&mfn);
                Some(Some(mfn))
            }
            GfnState::Pod => Some(None),
        }
    }

    /// Map `2^order` frames of RAM from `mfn` at `gfn` (`guest_physmap_add_page()`).
    pub fn map_ram(&mut self, gfn: u64, order: u32, mfn: u64) {
        let len = 1u64 << order;
        self.repopulated_pages += self.carve(gfn, gfn + len);
        self.p2m.insert(
            gfn,
            P2mEntry {
                len,
                order,
                mfn: Some(mfn),
            },
        );
    }

    /// Mark `2^order` frames PoD (`guest_physmap_mark_populate_on_demand()`): refused
    /// (EBUSY in Xen) if any frame is RAM; PoD frames are replaced.
    pub fn mark_pod(&mut self, gfn: u64, order: u32) -> bool {
        let len = 1u64 << order;
        if self.has_ram_in(gfn, gfn + len) {
            return false;
        }
        self.repopulated_pages += self.carve(gfn, gfn + len);
        self.p2m.insert(
            gfn,
            P2mEntry {
                len,
                order,
                mfn: None,
            },
        );
        self.pod_entries += len;
        true
    }

    /// The entry holding `gfn`.
    pub fn lookup(&self, gfn: u64) -> Option<(u64, P2mEntry)> {
        let (&s, &e) = self.p2m.range(..=gfn).next_back()?;
        (gfn < s + e.len).then_some((s, e))
    }

    /// The backing of `gfn`.
    pub fn state_of(&self, gfn: u64) -> Option<GfnState> {
        self.lookup(gfn).map(|(s, e)| match e.mfn {
            Some(m) => GfnState::Ram { mfn: m + (gfn - s) },
            None => GfnState::Pod,
        })
    }

    /// The first frame of `[gfn, end)` that is not populated (RAM or PoD).
    pub fn first_hole(&self, gfn: u64, end: u64) -> Option<u64> {
        let mut g = gfn;
        while g < end {
            match self.lookup(g) {
                Some((s, e)) => g = s + e.len,
                None => return Some(g),
            }
        }
        None
    }

    /// Back a PoD frame from the cache, 4 KiB at a time (Xen would use a 2 MiB page when
    /// the entry and cache allow). `None` when the cache is empty: Xen crashes the domain.
    pub fn demand_populate(&mut self, gfn: u64) -> Option<u64> {
        if self.pod_single.is_empty() {
            let sp = self.pod_super.pop_front()?;
            self.pod_single.extend(sp..sp + SUPERPAGE_PAGES);
        }
        let mfn = self.pod_single.pop_front()?;
        self.carve(gfn, gfn + 1);
        self.p2m.insert(
            gfn,
            P2mEntry {
                len: 1,
                order: 0,
                mfn: Some(mfn),
            },
        );
        Some(mfn)
    }

    /// The machine frame behind `gfn`, backing a PoD frame on the way (as a foreign map
    /// does). `Err(true)` = not populated, `Err(false)` = PoD cache exhausted.
    pub fn resolve(&mut self, gfn: u64) -> Result<u64, bool> {
        match self.state_of(gfn) {
            Some(GfnState::Ram { mfn }) => Ok(mfn),
            Some(GfnState::Pod) => self.demand_populate(gfn).ok_or(false),
            None => Err(true),
        }
    }

    /// Every owned block as `(mfn, pages)`: mapped RAM, re-pointed RAM and the PoD cache.
    pub fn owned_blocks(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = self
            .p2m
            .values()
            .filter_map(|e| e.mfn.map(|m| (m, e.len)))
            .collect();
        out.extend(self.unmapped.iter().copied());
        out.extend(self.pod_super.iter().map(|&m| (m, SUPERPAGE_PAGES)));
        out.extend(self.pod_single.iter().map(|&m| (m, 1)));
        out
    }

    /// The p2m as a list of extents.
    pub fn extents(&self) -> Vec<P2mExtent> {
        self.p2m
            .iter()
            .map(|(&gfn, e)| P2mExtent {
                gfn,
                pages: e.len,
                order: e.order,
                mfn: e.mfn,
            })
            .collect()
    }

    /// Contents of a page (zeros if never written).
    pub fn page(&self, mfn: u64) -> Option<&[u8; PAGE_USIZE]> {
        self.memory.get(&mfn).map(|b| &**b)
    }

    /// Note a write to guest frames `[first, end)` for log-dirty (translated domains).
    pub fn mark_dirty(&mut self, first: u64, end: u64) {
        if let Some(dirty) = self.dirty.as_mut() {
            dirty.extend(first..end);
        }
    }

    /// One past the highest gfn the p2m maps (0 for an empty p2m).
    pub fn gfn_end(&self) -> u64 {
        self.p2m.iter().next_back().map_or(0, |(&s, e)| s + e.len)
    }

    /// Mutable contents of a page, created zeroed.
    pub fn page_mut(&mut self, mfn: u64) -> &mut [u8; PAGE_USIZE] {
        self.memory
            .entry(mfn)
            .or_insert_with(|| Box::new([0; PAGE_USIZE]))
    }
}
