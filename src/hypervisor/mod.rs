//! The hypervisor seam: the primitives the builders need, named after the libxenctrl calls
//! they stand for. The real backend calls libxenctrl; the simulated host models what Xen
//! does for each call. Builders are written once, against this trait.

pub mod hvm_save;
pub mod sim;
#[cfg(feature = "xen")]
pub mod xenctrl;

use crate::types::{DomId, E820Entry, MapAddr, MapFrame, Mfn};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A failed libxenctrl call: what `failwith_oss_xc` prints, `[<code>] <message>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{function}: [{code}] {message}")]
pub struct XcError {
    /// The libxenctrl function that failed, e.g. `xc_domain_populate_physmap`.
    pub function: &'static str,
    /// xc error code or errno.
    pub code: i32,
    /// Human text (strerror or xc's message).
    pub message: String,
}

impl XcError {
    /// An error from an errno value, with the system's text for it.
    pub fn errno(function: &'static str, errno: i32) -> Self {
        XcError {
            function,
            code: errno,
            message: strerror(errno),
        }
    }

    /// An error from an errno value with extra context after the system text.
    pub fn errno_with(function: &'static str, errno: i32, context: impl fmt::Display) -> Self {
        XcError {
            function,
            code: errno,
            message: format!("{}: {context}", strerror(errno)),
        }
    }
}

/// The C library's text for an errno value.
pub fn strerror(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno)
        .to_string()
        .split(" (os error")
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Result of a hypervisor primitive.
pub type XcResult<T> = Result<T, XcError>;

/// What `xc_domain_getinfo` tells the builder about a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainInfo {
    /// `XEN_DOMINF_hvm_guest`: HVM or PVH container.
    pub hvm: bool,
    /// `XEN_DOMINF_hap`: hardware-assisted paging.
    pub hap: bool,
    /// Highest vCPU id.
    pub max_vcpu_id: u32,
    /// Pages owned by the domain.
    pub tot_pages: u64,
    /// Upper bound on `tot_pages` (`XEN_DOMCTL_max_mem`).
    pub max_pages: u64,
    /// Outstanding claim, pages.
    pub outstanding_pages: u64,
    /// `XEN_DOMINF_shutdown` with its reason (`SHUTDOWN_*`, `shutdown_reason`): `None` while
    /// the domain runs.
    pub shutdown_reason: Option<u32>,
}

/// `XEN_DOMCTL_PFINFO_*` (xen-project/xen `xen/include/public/domctl.h`): the page types
/// `getpageframeinfo3` gives ([`Hypervisor::domain_pfn_types`]) and a migration stream's
/// PAGE_DATA entries carry.
pub mod pfinfo {
    /// An ordinary page.
    pub const NOTAB: u32 = 0;
    /// A pinned page table (with an L1..L4 type).
    pub const LPINTAB: u32 = 1 << 31;
    /// Not a page of the guest: a hole.
    pub const XTAB: u32 = 0xf << 28;
    /// Allocate only, no data (Xen 4.2 to 4.5).
    pub const XALLOC: u32 = 0xe << 28;
    /// A broken page.
    pub const BROKEN: u32 = 0xd << 28;
    /// The bits the type lives in (`XEN_DOMCTL_PFINFO_LTAB_MASK`).
    pub const LTAB_MASK: u32 = 0xf << 28;
}

/// `SHUTDOWN_suspend` (xen-project/xen `xen/include/public/sched.h`): the reason a domain
/// suspended for a save has.
pub const SHUTDOWN_SUSPEND: u32 = 2;

/// Host facts from `xc_physinfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhysInfo {
    /// Physical CPUs (bitmap width for affinity).
    pub nr_cpus: u32,
    /// NUMA nodes.
    pub nr_nodes: u32,
    /// Free pages in the heap.
    pub free_pages: u64,
    /// Pages promised to claims.
    pub outstanding_pages: u64,
}

/// Credit scheduler parameters (`struct xen_domctl_sched_credit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SchedCredit {
    /// Relative weight.
    pub weight: u16,
    /// Cap in percent of one pCPU, 0 = none.
    pub cap: u16,
}

/// PoD state returned by `xc_domain_set_pod_target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PodInfo {
    /// Pages owned by the domain.
    pub tot_pages: u64,
    /// Pages in the PoD cache.
    pub pod_cache_pages: u64,
    /// Outstanding PoD p2m entries.
    pub pod_entries: u64,
}

/// `memflags` of a populate call (`XENMEMF_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MemFlags {
    /// NUMA node hint (`XENMEMF_node`).
    pub node: Option<u32>,
    /// `XENMEMF_exact_node_request`: never fall back to another node.
    pub exact_node: bool,
    /// `XENMEMF_populate_on_demand`.
    pub populate_on_demand: bool,
}

impl MemFlags {
    /// The wire encoding Xen expects.
    pub fn bits(&self) -> u32 {
        let mut bits = 0;
        if let Some(node) = self.node {
            bits |= (node + 1) << 8;
        }
        if self.populate_on_demand {
            bits |= 1 << 16;
        }
        if self.exact_node {
            bits |= 1 << 17;
        }
        bits
    }

    /// Memflags asking for node `node` exactly.
    pub fn exact(node: u32) -> Self {
        MemFlags {
            node: Some(node),
            exact_node: true,
            populate_on_demand: false,
        }
    }
}

/// Which host featureset `xc_get_cpu_featureset` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeaturesetKind {
    /// `XEN_SYSCTL_cpu_featureset_host`.
    Host,
    /// `XEN_SYSCTL_cpu_featureset_pv` (PV maximum).
    PvMax,
    /// `XEN_SYSCTL_cpu_featureset_hvm` (HVM maximum).
    HvmMax,
}

/// Arguments of `xc_cpuid_apply_policy` as XenServer's xenguest passes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuidPolicy {
    /// Building a restored domain (Xen <= 4.13 compatible adjustments).
    pub restore: bool,
    /// Feature words, already adjusted for nx/pae/itsc.
    pub featureset: Vec<u32>,
    /// Nested virtualisation requested.
    pub nested_virt: bool,
    /// Cores per socket, 0 = leave topology alone (XenServer patch).
    pub cores_per_socket: u32,
}

/// A domain's TSC state, as `xc_domain_get_tsc_info` gives it and `xc_domain_set_tsc_info`
/// takes it (the migration stream's X86_TSC_INFO record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TscInfo {
    /// `tsc_mode` (0 default, 1 always emulate, 2 never emulate).
    pub mode: u32,
    /// `gtsc_khz`: the guest's TSC frequency.
    pub khz: u32,
    /// `elapsed_nsec`: the guest's elapsed time.
    pub nsec: u64,
    /// `incarnation`: how many times the domain was migrated or restored.
    pub incarnation: u32,
}

/// One CPUID leaf of a domain's policy (`xen_cpuid_leaf_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuidLeaf {
    /// Leaf.
    pub leaf: u32,
    /// Subleaf (`XEN_CPUID_NO_SUBLEAF`, all ones, when none).
    pub subleaf: u32,
    /// EAX, EBX, ECX, EDX.
    pub regs: [u32; 4],
}

/// One MSR of a domain's policy (`xen_msr_entry_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsrEntry {
    /// The MSR's index.
    pub index: u32,
    /// `flags` (reserved, 0).
    pub flags: u32,
    /// Its value.
    pub value: u64,
}

/// The boot vCPU state `vcpu_hvm` gives an HVM container: flat 32-bit protected mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HvmBootVcpu {
    /// Physical entry point (`rip`).
    pub entry: u32,
    /// `rbx`: guest-physical address of the `hvm_start_info`.
    pub start_info_paddr: u32,
    /// PVH: default MTRR type write-back on every vCPU.
    pub mtrr_write_back: bool,
}

/// `VGCF_in_kernel`: the vCPU starts in kernel mode.
pub const VGCF_IN_KERNEL: u64 = 1 << 2;
/// `VGCF_online`: the vCPU is brought up.
pub const VGCF_ONLINE: u64 = 1 << 5;
/// `FLAT_KERNEL_CS64`: the 64-bit PV kernel code selector.
pub const FLAT_KERNEL_CS64: u16 = 0xe033;
/// `FLAT_KERNEL_SS64`: the 64-bit PV kernel stack selector.
pub const FLAT_KERNEL_SS64: u16 = 0xe02b;
/// `FLAT_KERNEL_DS64`: the 64-bit PV kernel data selector (the NULL selector).
pub const FLAT_KERNEL_DS64: u16 = 0;
/// `X86_DR6_DEFAULT`.
pub const X86_DR6_DEFAULT: u64 = 0xffff_0ff0;
/// `X86_DR7_DEFAULT`.
pub const X86_DR7_DEFAULT: u64 = 0x0000_0400;

/// The boot vCPU of a 64-bit PV guest: the fields of `vcpu_guest_context_x86_64_t` that
/// libxenguest's `vcpu_x86_64` sets; every other field is zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PvVcpuContext {
    /// `VGCF_*` flags.
    pub flags: u64,
    /// Entry point (virtual).
    pub rip: u64,
    /// Top of the boot stack (virtual).
    pub rsp: u64,
    /// Virtual address of the `start_info` page.
    pub rsi: u64,
    /// `rflags` (IF set).
    pub rflags: u64,
    /// Code selector.
    pub cs: u16,
    /// Stack selector.
    pub ss: u16,
    /// Data selectors.
    pub ds: u16,
    /// `es`.
    pub es: u16,
    /// `fs`.
    pub fs: u16,
    /// `gs`.
    pub gs: u16,
    /// Kernel stack selector for ring transitions.
    pub kernel_ss: u64,
    /// Kernel stack pointer for ring transitions.
    pub kernel_sp: u64,
    /// `ctrlreg[3]`: the L4 table's machine address (`mfn << 12`).
    pub cr3: u64,
    /// `debugreg[6]`.
    pub dr6: u64,
    /// `debugreg[7]`.
    pub dr7: u64,
    /// `vm_assist` bits.
    pub vm_assist: u64,
}

/// A reserved device memory range (RMRR) from `xc_reserved_device_memory_map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservedRange {
    /// First frame.
    pub start_pfn: u64,
    /// Length, pages.
    pub nr_pages: u64,
}

/// A PCI address `SSSS:BB:DD.F`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PciSbdf {
    /// Segment.
    pub seg: u16,
    /// Bus.
    pub bus: u8,
    /// Device (0..32).
    pub dev: u8,
    /// Function (0..8).
    pub func: u8,
}

impl PciSbdf {
    /// `(dev << 3) | fn`, as `xc_reserved_device_memory_map` takes it.
    pub fn devfn(&self) -> u8 {
        (self.dev << 3) | self.func
    }
}

impl fmt::Display for PciSbdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.seg, self.bus, self.dev, self.func
        )
    }
}

/// The hypervisor primitives the builders use. One call here is one libxenctrl call (and,
/// for the real backend, normally one hypercall).
pub trait Hypervisor: Send + Sync {
    /// `xc_domain_getinfo` for one domain.
    fn domain_getinfo(&self, domid: DomId) -> XcResult<DomainInfo>;
    /// `xc_physinfo`.
    fn physinfo(&self) -> XcResult<PhysInfo>;
    /// `xc_vcpu_setaffinity(.., XEN_VCPUAFFINITY_HARD)`; `hard[i]` = may run on pCPU i.
    fn vcpu_setaffinity_hard(&self, domid: DomId, vcpu: u32, hard: &[bool]) -> XcResult<()>;
    /// `xc_sched_credit_domain_get`.
    fn sched_credit_domain_get(&self, domid: DomId) -> XcResult<SchedCredit>;
    /// `xc_sched_credit_domain_set`.
    fn sched_credit_domain_set(&self, domid: DomId, params: SchedCredit) -> XcResult<()>;
    /// `xc_domain_set_tsc_info(domid, mode, 0, 0, 0)`.
    fn domain_set_tsc_info(&self, domid: DomId, tsc_mode: u32) -> XcResult<()>;
    /// `xc_domain_claim_pages`; 0 cancels the domain's claim.
    fn domain_claim_pages(&self, domid: DomId, nr_pages: u64) -> XcResult<()>;
    /// `xc_domain_set_pod_target`.
    fn domain_set_pod_target(&self, domid: DomId, target_pages: u64) -> XcResult<PodInfo>;
    /// `xc_domain_populate_physmap`: one extent of `2^order` pages at each frame in `extents`
    /// (gfns for a translated domain, pfns for a PV one). Returns how many extents were done
    /// before the first failure (Xen stops there). For a PV domain Xen writes each extent's
    /// first MFN back into `extents`: the buffer is libxenctrl's `xen_pfn_t` array, in and
    /// out, so it stays raw here and the PV builder types what comes back
    /// ([`crate::memory::populate`]'s `Mfn`s).
    fn domain_populate_physmap(
        &self,
        domid: DomId,
        order: u32,
        flags: MemFlags,
        extents: &mut [u64],
    ) -> XcResult<usize>;
    /// `xc_clear_domain_pages` of `nr_pages` frames from `first`: gfns for a translated
    /// (HVM/PVH) domain, machine frames for a PV one (as `xc_map_foreign_range` maps them).
    fn clear_domain_pages(&self, domid: DomId, first: MapFrame, nr_pages: u64) -> XcResult<()>;
    /// Copy `data` to the domain's memory at `at` (foreign map + memcpy + unmap): a
    /// guest-physical address for a translated domain, a machine address for a PV one, whose
    /// frames are mapped by MFN (the PV builder translates through the p2m it keeps and writes
    /// each MFN-contiguous run with one call).
    fn write_guest(&self, domid: DomId, at: MapAddr, data: &[u8]) -> XcResult<()>;
    /// Copy the domain's memory at `at` into `buf` (addresses as for `write_guest`).
    fn read_guest(&self, domid: DomId, at: MapAddr, buf: &mut [u8]) -> XcResult<()>;
    /// `xc_hvm_param_set`.
    fn hvm_param_set(&self, domid: DomId, param: u32, value: u64) -> XcResult<()>;
    /// `xc_hvm_param_get`.
    fn hvm_param_get(&self, domid: DomId, param: u32) -> XcResult<u64>;
    /// `xc_domain_set_memory_map`.
    fn domain_set_memory_map(&self, domid: DomId, e820: &[E820Entry]) -> XcResult<()>;
    /// `xc_domain_set_time_offset` (seconds, an `int32_t` as in libxenctrl).
    fn domain_set_time_offset(&self, domid: DomId, offset_s: i32) -> XcResult<()>;
    /// `xc_get_cpu_featureset`.
    fn get_cpu_featureset(&self, kind: FeaturesetKind) -> XcResult<Vec<u32>>;
    /// `xc_cpuid_apply_policy` (with XenServer's cores-per-socket argument).
    fn cpuid_apply_policy(&self, domid: DomId, policy: &CpuidPolicy) -> XcResult<()>;
    /// `xc_dom_gnttab_seed`: grant entries 0 (console) and 1 (xenstore), naming the frames
    /// by gfn in a translated domain and by MFN in a PV one (its `is_hvm` argument).
    fn gnttab_seed(
        &self,
        domid: DomId,
        console: MapFrame,
        xenstore: MapFrame,
        console_domid: DomId,
        xenstore_domid: DomId,
    ) -> XcResult<()>;
    /// `xc_domain_hvm_getcontext` + `xc_domain_hvm_setcontext` with the BSP in flat 32-bit
    /// protected mode, as libxenguest's `vcpu_hvm` does.
    fn domain_hvm_set_boot_vcpu(&self, domid: DomId, vcpu: &HvmBootVcpu) -> XcResult<()>;
    /// `xc_reserved_device_memory_map` for one PCI device (its RMRRs).
    fn reserved_device_memory_map(&self, sbdf: PciSbdf) -> XcResult<Vec<ReservedRange>>;
    /// `XEN_DOMCTL_set_address_size` (libxenguest's `x86_compat`): 64 or 32 bits (PV).
    fn domain_set_address_size(&self, _domid: DomId, _bits: u32) -> XcResult<()> {
        Err(not_in_backend("XEN_DOMCTL_set_address_size"))
    }
    /// `xc_domain_get_native_protocol`: the guest's I/O ABI, `x86_64-abi` or `x86_32-abi`.
    fn get_native_protocol(&self, _domid: DomId) -> XcResult<String> {
        Err(not_in_backend("xc_domain_get_native_protocol"))
    }
    /// `xc_domain_getinfo`'s `shared_info_frame`: the MFN of the domain's shared info page.
    fn domain_shared_info_frame(&self, _domid: DomId) -> XcResult<Mfn> {
        Err(not_in_backend("xc_domain_getinfo"))
    }
    /// `xc_mmuext_op(MMUEXT_PIN_L4_TABLE)` on the L4 page table at machine frame `l4`:
    /// Xen validates the whole tree and takes a type reference on it.
    fn mmuext_pin_l4_table(&self, _domid: DomId, _l4: Mfn) -> XcResult<()> {
        Err(not_in_backend("xc_mmuext_op"))
    }
    /// `XEN_DOMCTL_hypercall_init`: Xen writes the hypercall page into machine frame `page`.
    fn hypercall_page_init(&self, _domid: DomId, _page: Mfn) -> XcResult<()> {
        Err(not_in_backend("XEN_DOMCTL_hypercall_init"))
    }
    /// `xc_vcpu_setcontext` with a 64-bit PV context (`vcpu_x86_64`).
    fn vcpu_setcontext_pv(&self, _domid: DomId, _vcpu: u32, _ctx: &PvVcpuContext) -> XcResult<()> {
        Err(not_in_backend("xc_vcpu_setcontext"))
    }
    /// `xc_domain_decrease_reservation` of order-0 extents: give back the page at each gfn
    /// (translated domains). Returns how many were done before the first failure, as Xen
    /// stops there.
    fn domain_decrease_reservation(&self, _domid: DomId, _gfns: &[u64]) -> XcResult<usize> {
        Err(not_in_backend("xc_domain_decrease_reservation"))
    }
    /// `xc_domain_get_tsc_info`.
    fn domain_get_tsc_info(&self, _domid: DomId) -> XcResult<TscInfo> {
        Err(not_in_backend("xc_domain_get_tsc_info"))
    }
    /// `xc_domain_set_tsc_info` with every field (a restore's X86_TSC_INFO record; builds
    /// set the mode alone, [`Hypervisor::domain_set_tsc_info`]).
    fn domain_restore_tsc_info(&self, _domid: DomId, _info: &TscInfo) -> XcResult<()> {
        Err(not_in_backend("xc_domain_set_tsc_info"))
    }
    /// `xc_domain_hvm_getcontext`: the whole HVM context, Xen's save records back to back.
    fn domain_hvm_getcontext(&self, _domid: DomId) -> XcResult<Vec<u8>> {
        Err(not_in_backend("xc_domain_hvm_getcontext"))
    }
    /// `xc_domain_hvm_setcontext`: load a whole HVM context (a restore's HVM_CONTEXT).
    fn domain_hvm_setcontext(&self, _domid: DomId, _context: &[u8]) -> XcResult<()> {
        Err(not_in_backend("xc_domain_hvm_setcontext"))
    }
    /// `xc_set_domain_cpu_policy` (libxenguest): a restore's X86_CPUID_POLICY and
    /// X86_MSR_POLICY records.
    fn domain_set_cpu_policy(
        &self,
        _domid: DomId,
        _leaves: &[CpuidLeaf],
        _msrs: &[MsrEntry],
    ) -> XcResult<()> {
        Err(not_in_backend("xc_set_domain_cpu_policy"))
    }
    /// `xc_shadow_control(XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY)` (`enable`) or
    /// `XEN_DOMCTL_SHADOW_OP_OFF`: start or stop tracking the pages the domain writes. Xen
    /// says EBUSY while another shadow operation runs; XenServer's libxenguest retries.
    fn domain_logdirty(&self, _domid: DomId, _enable: bool) -> XcResult<()> {
        Err(not_in_backend("xc_shadow_control"))
    }
    /// `xc_shadow_control(XEN_DOMCTL_SHADOW_OP_CLEAN)`: which of the first `nr_pfns` pfns were
    /// dirtied since log-dirty began or the last clean, as a bitmap (bit `pfn % 64` of word
    /// `pfn / 64`, `bitmap` at least `nr_pfns` bits), and the tracking restarts. Returns the
    /// pages found dirty (`stats.dirty_count`).
    fn domain_logdirty_clean(
        &self,
        _domid: DomId,
        _bitmap: &mut [u64],
        _nr_pfns: u64,
    ) -> XcResult<u64> {
        Err(not_in_backend("xc_shadow_control"))
    }
    /// `xc_get_pfn_type_batch` (`XEN_DOMCTL_getpageframeinfo3`): each pfn's
    /// `XEN_DOMCTL_PFINFO_*` type, at most 1024 pfns per call as libxenguest asks. Xen looks
    /// each gfn up with `P2M_ALLOC`, so a populate-on-demand entry is backed by the query.
    fn domain_pfn_types(&self, _domid: DomId, _pfns: &[u64]) -> XcResult<Vec<u32>> {
        Err(not_in_backend("xc_get_pfn_type_batch"))
    }
    /// `xc_version(XENVER_version)`: Xen's major and minor version (a stream's header).
    fn xen_version(&self) -> XcResult<(u32, u32)> {
        Err(not_in_backend("xc_version"))
    }
    /// `xc_get_domain_cpu_policy` (libxenguest's `xc_cpu_policy_get_domain` and
    /// `xc_cpu_policy_serialise`): the domain's CPUID leaves and MSRs, as a save sends them.
    fn domain_get_cpu_policy(&self, _domid: DomId) -> XcResult<(Vec<CpuidLeaf>, Vec<MsrEntry>)> {
        Err(not_in_backend("xc_get_domain_cpu_policy"))
    }
    /// `xc_domain_maximum_gpfn`: the highest gfn the domain's p2m has ever mapped.
    fn domain_maximum_gpfn(&self, _domid: DomId) -> XcResult<u64> {
        Err(not_in_backend("xc_domain_maximum_gpfn"))
    }
    /// Pages the domain owns on each NUMA node. Xen 4.17 has no such query (XenServer's
    /// `XEN_DOMCTL_NUMA_OP_GET_NODE_PAGES` patch adds one), so the default says ENOSYS.
    fn domain_pages_by_node(&self, _domid: DomId) -> XcResult<Vec<u64>> {
        Err(XcError::errno("xc_domain_get_node_pages", libc::ENOSYS))
    }
}

/// The error of a primitive a backend does not provide (yet).
fn not_in_backend(function: &'static str) -> XcError {
    XcError::errno_with(
        function,
        libc::ENOSYS,
        "not provided by this hypervisor backend",
    )
}
