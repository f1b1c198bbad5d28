//! The PV build (`linux_build`), step for step as the C xenguest's `stub_xc_linux_build`
//! with libxenguest underneath: platform data, vCPUs, kernel and ramdisk (ELF with Xen notes,
//! or a bzImage with a compressed ELF inside), `meminit_pv`, the virtual layout, the p2m
//! list, start_info, the initial page tables, the hypercall page, L4 pinning, shared info,
//! the boot vCPU, grant seeding and CPUID.
//!
//! PV memory through the seam: a PV domain is not translated, so its frames are addressed by
//! MFN. `meminit_pv` gets the MFNs back from `populate_physmap` and keeps the p2m
//! (`pfn -> mfn`); every write into the guest goes through the builders' guest memory, which
//! translates frames through that p2m and hands `write_guest`/`clear_domain_pages` machine addresses,
//! one call per MFN-contiguous run. The result line carries the MFNs of the xenstore and
//! console rings.
//!
//! Only 64-bit kernels are built. 32-bit PAE kernels (`xen-3.0-x86_32p`) are refused with a
//! clear error: XenServer no longer runs 32-bit PV guests, and Xen 4.17 may be built without
//! them (`CONFIG_PV32`).

use super::ctx::BuildCtx;
use super::guest::{copy_overlap, GuestMemory};
use super::{BuildOutput, BuildRequest};
use crate::abi::SIF_MOD_START_PFN;
use crate::boot::{pv_shared_info_page, PvStartInfo};
use crate::cpuid;
use crate::error::{Result, Step};
use crate::hypervisor::{
    Hypervisor, MemFlags, PvVcpuContext, FLAT_KERNEL_CS64, FLAT_KERNEL_DS64, FLAT_KERNEL_SS64,
    VGCF_IN_KERNEL, VGCF_ONLINE, X86_DR6_DEFAULT, X86_DR7_DEFAULT,
};
use crate::image;
use crate::image::decompress;
use crate::image::elf::{Class, Elf, Segment, EM_X86_64};
use crate::image::summary::{self, Container};
use crate::image::xen_notes::{self, XenNotes};
use crate::memory::{self, PopulateStats};
use crate::pv_layout::{self, LayoutError, PvLayout, PvLayoutInput};
use crate::report::BuildResult;
use crate::request::ImageLimits;
use crate::types::{
    pages_of_mib, usize_of, DomId, MapAddr, MapFrame, Pfn, ORDER_2M, PAGE_BYTES, PAGE_USIZE,
};

/// `XENFEAT_auto_translated_physmap`.
const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// Xen's part of a 64-bit PV address space, which a guest cannot map.
const XEN_AREA: (u64, u64) = (0xffff_8000_0000_0000, 0xffff_8800_0000_0000);

/// Build a PV guest, after the opening steps.
pub(super) fn build(ctx: BuildCtx<'_>) -> Result<BuildOutput> {
    let (req, domid) = (ctx.req, ctx.domid);
    let limits = ImageLimits::read(&ctx.store)?;
    let kernel = ctx.loading(|| load_kernel(req, &limits))?;
    let ramdisk = ctx.loading(|| load_ramdisk(req, &limits))?;
    let total_pages = pages_of_mib(req.mem_start_mib); // xc_dom_mem_init
    let (p2m, ram) = meminit_pv(&ctx.hv, domid, total_pages, req.mem_pnode)?;
    let mem = GuestMemory::pv(&ctx.hv, domid, p2m);
    let layout = build_image(&mem, req, &kernel, ramdisk.as_deref())?;
    boot_image(&mem, req, &kernel, &layout)?;

    let store_mfn = mem.mfn(Pfn(layout.xenstore_pfn))?;
    let console_mfn = mem.mfn(Pfn(layout.console_pfn))?;
    ctx.hv
        .gnttab_seed(
            domid,
            MapFrame::Mfn(console_mfn),
            MapFrame::Mfn(store_mfn),
            req.console_domid,
            req.store_domid,
        )
        .map_err(Step::GnttabInit.xc())?;
    cpuid::construct_cpuid_policy(&ctx.hv, domid, &ctx.flags, false)?;
    let protocol = ctx
        .hv
        .get_native_protocol(domid)
        .map_err(Step::NativeProtocol.xc())?;

    let built = super::Built {
        layout: None,
        pod_target_pages: None,
        ram,
        result: BuildResult {
            store_mfn: store_mfn.0,
            console_mfn: console_mfn.0,
            protocol: Some(protocol),
        },
    };
    Ok(super::finish(&ctx, built))
}

/// A parsed PV kernel: the ELF image (decompressed) and what its notes say, with the
/// addresses `elf_xen_addr_calc_check` derives.
#[derive(Debug, Clone)]
pub struct PvKernel {
    /// The ELF image.
    pub elf: Vec<u8>,
    /// Its loadable segments.
    pub segments: Vec<Segment>,
    /// Lowest physical address of the segments (`pstart`).
    pub pstart: u64,
    /// Xen notes.
    pub notes: XenNotes,
    /// `VIRT_BASE` (0 when absent).
    pub virt_base: u64,
    /// Kernel image in virtual memory: `[virt_kstart, virt_kend)`.
    pub virt_kstart: u64,
    /// End of the image.
    pub virt_kend: u64,
    /// Entry point.
    pub virt_entry: u64,
    /// The compression the image came in, if any (`gzip` for a gzipped file).
    pub compression: Option<decompress::Format>,
}

/// `xc_dom_kernel_file` + `xc_dom_parse_image`.
fn load_kernel(req: &BuildRequest, limits: &ImageLimits) -> Result<PvKernel> {
    // A repeat of the same kernel file in this process reuses the unpacked image.
    let image::KernelImage { data, compression } =
        image::load_kernel_cached(Step::KernelFile, &req.image, limits.kernel_bytes)?;
    let path = req.image.display().to_string();
    let bad = |step: Step, code: i32, reason: String| step.image(code, path.clone(), reason);
    parse_kernel(
        data.to_vec(),
        compression,
        limits.kernel_bytes,
        &req.features,
    )
    .map_err(|(code, reason)| bad(Step::ParseImage, code, reason))
}

/// Parse a kernel image (bzImage or ELF) as `xc_dom_parse_image` does for a PV container.
/// Errors are `(errno, reason)`.
pub fn parse_kernel(
    data: Vec<u8>,
    compression: Option<decompress::Format>,
    limit: u64,
    requested_features: &str,
) -> std::result::Result<PvKernel, (i32, String)> {
    let einval = |reason: String| (libc::EINVAL, reason);
    let (elf_bytes, compression) = image::unwrap_bzimage(data, compression, limit)?;
    let elf = Elf::parse(&elf_bytes).map_err(|e| {
        einval(format!(
            "kernel is neither a bzImage nor a usable ELF image: {e}"
        ))
    })?;
    // A 32-bit Xen kernel is refused as such, whatever else is wrong with it.
    let xen_kernel = elf.has_xen_notes().map_err(|e| einval(e.to_string()))?;
    if xen_kernel && (elf.machine != EM_X86_64 || elf.class != Class::Elf64) {
        return Err((
            libc::EOPNOTSUPP,
            "32-bit PV kernels (xen-3.0-x86_32p) are not supported: only 64-bit PV guests are built".into(),
        ));
    }
    // xc_dom_parse_image: notes, addresses, guest type (shared with libxenguest's view).
    let summary = summary::summarize(&elf, Container::Pv).map_err(|e| einval(e.to_string()))?;
    let parms = summary
        .parms
        .ok_or_else(|| einval("not a Xen kernel".into()))?;
    let (virt_kstart, virt_kend) = summary.kernel_seg;
    check_guest_range("kernel image", parms.virt_base, virt_kend).map_err(einval)?;
    let notes = parms.notes;
    let active = requested_feature_bits(requested_features) | notes.required_features;
    if active & !notes.supported_features != 0 {
        return Err(einval(format!(
            "unsupported feature requested (active {active:#x}, kernel supports {:#x})",
            notes.supported_features
        )));
    }
    if active & (1 << XENFEAT_AUTO_TRANSLATED_PHYSMAP) != 0 {
        return Err((
            libc::EOPNOTSUPP,
            "PV Autotranslate guests no longer supported".into(),
        ));
    }
    let (segments, pstart) = (elf.segments.clone(), elf.paddr_bounds().0);
    Ok(PvKernel {
        elf: elf_bytes,
        segments,
        pstart,
        notes,
        virt_base: parms.virt_base,
        virt_kstart,
        virt_kend,
        virt_entry: summary.entry,
        compression,
    })
}

/// The features `-features` asks for (`elf_xen_parse_features` without a required map:
/// every known name counts, `!` or not; unknown names are ignored).
fn requested_feature_bits(features: &str) -> u32 {
    features
        .split('|')
        .map(|t| t.trim_start_matches('!'))
        .filter_map(|name| {
            xen_notes::FEATURE_NAMES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|&(_, bit)| 1 << bit)
        })
        .fold(0, |a, b| a | b)
}

/// A virtual range `[from, to)` a 64-bit PV guest can map: canonical, in one half, clear of
/// Xen's area.
fn check_guest_range(what: &str, from: u64, to: u64) -> std::result::Result<(), String> {
    let last = to.saturating_sub(1).max(from);
    let low_half = last < (1 << 47);
    let high_half = from >= 0xffff_8000_0000_0000;
    let clear_of_xen = last < XEN_AREA.0 || from >= XEN_AREA.1;
    if (low_half || high_half) && clear_of_xen {
        Ok(())
    } else {
        Err(format!(
            "{what} [{from:#x}, {to:#x}) is not in a guest-mappable part of the address space"
        ))
    }
}

/// `xc_dom_module_file` + the gunzip of `xc_dom_build_module`: a gzipped ramdisk is
/// decompressed when it fits the limit, else handed over as it is (as libxenguest does).
fn load_ramdisk(req: &BuildRequest, limits: &ImageLimits) -> Result<Option<Vec<u8>>> {
    let Some(path) = req.ramdisk.as_ref().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(None);
    };
    let raw = image::read_file(Step::ModuleFile, path, limits.ramdisk_bytes)?;
    if !decompress::is_gzip(&raw) {
        return Ok(Some(raw));
    }
    match decompress::gunzip(&raw, limits.ramdisk_bytes) {
        Ok(data) => Ok(Some(data)),
        Err(e) => {
            log::info!(
                "ramdisk {}: {e}; handing it over compressed",
                path.display()
            );
            Ok(Some(raw))
        }
    }
}

/// `meminit_pv`: 64-bit address size, then RAM as 2 MiB extents in as few calls as the ABI
/// allows, the rest (and whatever the host could not give as 2 MiB) as 4 KiB pages. Xen
/// writes each extent's MFN back; the p2m is built from them. Any claim is cancelled.
fn meminit_pv(
    hv: &dyn Hypervisor,
    domid: DomId,
    total_pages: u64,
    pnode: Option<u32>,
) -> Result<(memory::P2m, PopulateStats)> {
    let step = Step::BootMemInit;
    hv.domain_set_address_size(domid, 64).map_err(step.xc())?;
    let flags = pnode.map(MemFlags::exact).unwrap_or_default();
    let runs = memory::plan_pv_extents(total_pages);
    let (p2m, stats) = super::release_claim_after(hv, domid, step, || {
        memory::populate_pv(hv, domid, &runs, flags, total_pages, step)
    })?;
    log::info!(
        "PHYSICAL MEMORY ALLOCATION: 4KB PAGES: {:#x} 2MB PAGES: {:#x}",
        stats.pages_by_order.get(&0).unwrap_or(&0),
        stats.pages_by_order.get(&ORDER_2M).unwrap_or(&0) >> ORDER_2M
    );
    Ok((p2m, stats))
}

/// `xc_dom_build_image`: plan the layout, load the kernel and the ramdisk, clear the rings.
fn build_image(
    mem: &GuestMemory<'_>,
    req: &BuildRequest,
    kernel: &PvKernel,
    ramdisk: Option<&[u8]>,
) -> Result<PvLayout> {
    let step = Step::BuildImage;
    let layout_error = |e: LayoutError| {
        let code = match e {
            LayoutError::NoRoom(_) => libc::ENOMEM,
            LayoutError::BadAddress(_) => libc::EINVAL,
        };
        step.image(code, req.image.display().to_string(), e.to_string())
    };
    let layout = pv_layout::plan(&PvLayoutInput {
        total_pages: mem.p2m().len() as u64,
        virt_base: kernel.virt_base,
        kernel_vstart: kernel.virt_kstart,
        kernel_vend: kernel.virt_kend,
        ramdisk_bytes: ramdisk.map(|r| r.len() as u64),
        unmapped_initrd: kernel.notes.mod_start_pfn,
        p2m_base: kernel.notes.init_p2m,
    })
    .map_err(layout_error)?;
    let bad_range = |reason: String| layout_error(LayoutError::BadAddress(reason));
    check_guest_range("initial mapping", layout.virt_base, layout.virt_pgtab_end)
        .map_err(bad_range)?;
    if layout.p2m_at_base {
        let end = layout.p2m.vstart + layout.p2m_list_pages * PAGE_BYTES;
        check_guest_range("p2m list", layout.p2m.vstart, end).map_err(bad_range)?;
    }
    for seg in [Some(&layout.kernel), layout.ramdisk.as_ref()]
        .into_iter()
        .flatten()
    {
        log::debug!(
            "segment [{:#x}, {:#x}) at pfn {:#x} + {:#x} pages",
            seg.vstart,
            seg.vend,
            seg.pfn,
            seg.pages
        );
    }

    // The kernel: each loadable segment at its physical offset from pstart, the rest zero.
    // In bounds: offsets checked by the ELF parser, paddr within [pstart, pend).
    let segments: Vec<(u64, &[u8])> = kernel
        .segments
        .iter()
        .map(|seg| {
            let bytes = &kernel.elf[seg.file_range()];
            (seg.paddr - kernel.pstart, bytes)
        })
        .collect();
    mem.write_image(
        step,
        layout.kernel.pfn * PAGE_BYTES,
        layout.kernel.pages * PAGE_BYTES,
        |offset, chunk| {
            for &(at, bytes) in &segments {
                copy_overlap(at, bytes, offset, chunk);
            }
        },
    )?;
    if let (Some(seg), Some(data)) = (layout.ramdisk, ramdisk) {
        mem.write_image(
            step,
            seg.pfn * PAGE_BYTES,
            seg.pages * PAGE_BYTES,
            |offset, chunk| copy_overlap(0, data, offset, chunk),
        )?;
    }
    // alloc_magic_pages_pv clears the two rings.
    mem.clear(step, layout.xenstore_pfn, 1)?;
    mem.clear(step, layout.console_pfn, 1)?;
    Ok(layout)
}

/// `xc_dom_boot_image` for x86_64 PV: p2m list and page tables, start_info, hypercall page,
/// L4 pin, shared info, the boot vCPU.
fn boot_image(
    mem: &GuestMemory<'_>,
    req: &BuildRequest,
    kernel: &PvKernel,
    layout: &PvLayout,
) -> Result<()> {
    let step = Step::BootImage;
    let hv = mem.hv();
    let domid = mem.domid();
    let shared_info_mfn = hv.domain_shared_info_frame(domid).map_err(step.xc())?;

    // setup_pgtables_x86_64: the p2m list, then every table.
    let mut list = Vec::with_capacity(usize_of(layout.p2m_list_pages * PAGE_BYTES));
    for &m in mem.p2m() {
        list.extend_from_slice(&m.to_le_bytes());
    }
    list.resize(usize_of(layout.p2m_list_pages * PAGE_BYTES), 0);
    mem.write(step, layout.p2m.pfn * PAGE_BYTES, &list)?;
    drop(list);
    let tables = layout
        .page_tables(mem.p2m())
        .map_err(|e| step.image(libc::EINVAL, req.image.display().to_string(), e.to_string()))?;
    // Consecutive table frames are written together.
    let mut i = 0;
    while i < tables.len() {
        let mut j = i + 1;
        while j < tables.len() && tables[j].0 == tables[j - 1].0 + 1 {
            j += 1;
        }
        let mut bytes = Vec::with_capacity((j - i) * PAGE_USIZE);
        for (_, t) in &tables[i..j] {
            for e in t.iter() {
                bytes.extend_from_slice(&e.to_le_bytes());
            }
        }
        mem.write(step, tables[i].0 * PAGE_BYTES, &bytes)?;
        i = j;
    }

    // start_info_x86_64
    let store_mfn = mem.mfn(Pfn(layout.xenstore_pfn))?;
    let console_mfn = mem.mfn(Pfn(layout.console_pfn))?;
    let mut flags = req.flags;
    let (mod_start, mod_len) = match layout.ramdisk {
        Some(seg) if layout.ramdisk_unmapped => {
            flags |= SIF_MOD_START_PFN;
            (seg.pfn, seg.pages * PAGE_BYTES)
        }
        Some(seg) => (seg.vstart, seg.vend - seg.vstart),
        None => (0, 0),
    };
    let si = PvStartInfo {
        nr_pages: layout.total_pages,
        shared_info: shared_info_mfn.maddr(),
        flags,
        store_mfn,
        store_evtchn: req.store_port,
        console_mfn,
        console_evtchn: req.console_port,
        pt_base: layout.pgtables.vstart,
        nr_pt_frames: layout.mappings[0].tables,
        mfn_list: layout.p2m.vstart,
        mod_start,
        mod_len,
        cmdline: req.cmdline.clone(),
        first_p2m_pfn: if layout.p2m_at_base {
            layout.p2m.pfn
        } else {
            0
        },
        nr_p2m_frames: if layout.p2m_at_base {
            layout.p2m.pages
        } else {
            0
        },
    };
    mem.write(step, layout.start_info_pfn * PAGE_BYTES, &si.page())?;

    // setup_hypercall_page
    if let Some(va) = kernel.notes.hypercall_page {
        let pfn = va.wrapping_sub(kernel.virt_base) >> 12;
        if !(layout.kernel.pfn..layout.kernel.pfn + layout.kernel.pages).contains(&pfn) {
            return Err(step.image(
                libc::EINVAL,
                req.image.display().to_string(),
                format!("HYPERCALL_PAGE {va:#x} is outside the kernel image"),
            ));
        }
        hv.hypercall_page_init(domid, mem.mfn(Pfn(pfn))?)
            .map_err(step.xc())?;
    }

    // bootlate_pv: pin the L4, then shared info with every upcall masked.
    let l4_mfn = mem.mfn(Pfn(layout.pgtables.pfn))?;
    hv.mmuext_pin_l4_table(domid, l4_mfn).map_err(step.xc())?;
    hv.write_guest(
        domid,
        MapAddr::machine(shared_info_mfn, 0),
        &pv_shared_info_page(),
    )
    .map_err(step.xc())?;

    // vcpu_x86_64
    let rsp = layout.vaddr_of_pfn(layout.bootstack_pfn + 1);
    let ctx = PvVcpuContext {
        flags: VGCF_IN_KERNEL | VGCF_ONLINE,
        rip: kernel.virt_entry,
        rsp,
        rsi: layout.vaddr_of_pfn(layout.start_info_pfn),
        rflags: 1 << 9,
        cs: FLAT_KERNEL_CS64,
        ss: FLAT_KERNEL_SS64,
        ds: FLAT_KERNEL_DS64,
        es: FLAT_KERNEL_DS64,
        fs: FLAT_KERNEL_DS64,
        gs: FLAT_KERNEL_DS64,
        kernel_ss: u64::from(FLAT_KERNEL_SS64),
        kernel_sp: rsp,
        cr3: l4_mfn.maddr(),
        dr6: X86_DR6_DEFAULT,
        dr7: X86_DR7_DEFAULT,
        vm_assist: 0,
    };
    hv.vcpu_setcontext_pv(domid, 0, &ctx).map_err(step.xc())
}
