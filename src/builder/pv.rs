//! The PV build (`linux_build`), step for step as the C xenguest's `stub_xc_linux_build`
//! with libxenguest underneath: platform data, vCPUs, kernel and ramdisk (ELF with Xen notes,
//! or a bzImage with a compressed ELF inside), `meminit_pv`, the virtual layout, the p2m
//! list, start_info, the initial page tables, the hypercall page, L4 pinning, shared info,
//! the boot vCPU, grant seeding and CPUID.
//!
//! PV memory through the seam: a PV domain is not translated, so its frames are addressed by
//! MFN. `meminit_pv` gets the MFNs back from `populate_physmap` and keeps the p2m
//! (`pfn -> mfn`); every write into the guest goes through [`PvMemory`], which translates
//! frames through that p2m and hands `write_guest`/`clear_domain_pages` machine addresses,
//! one call per MFN-contiguous run. The result line carries the MFNs of the xenstore and
//! console rings.
//!
//! Only 64-bit kernels are built. 32-bit PAE kernels (`xen-3.0-x86_32p`) are refused with a
//! clear error: XenServer no longer runs 32-bit PV guests, and Xen 4.17 may be built without
//! them (`CONFIG_PV32`).

use super::{BuildEnv, BuildOutput, BuildRequest};
use crate::abi::SIF_MOD_START_PFN;
use crate::boot::{pv_shared_info_page, PvStartInfo};
use crate::cpuid;
use crate::error::{Error, Result};
use crate::hypervisor::{
    Hypervisor, MemFlags, PvVcpuContext, XcError, FLAT_KERNEL_CS64, FLAT_KERNEL_DS64,
    FLAT_KERNEL_SS64, VGCF_IN_KERNEL, VGCF_ONLINE, X86_DR6_DEFAULT, X86_DR7_DEFAULT,
};
use crate::image::decompress;
use crate::image::elf::{Class, Elf, Segment, EM_X86_64};
use crate::image::summary::{self, Container};
use crate::image::xen_notes::{self, XenNotes};
use crate::image::{self, DEFAULT_MAX_IMAGE_BYTES};
use crate::memory::{PopulateStats, MAX_EXTENTS_PER_CALL};
use crate::platform;
use crate::pv_layout::{self, LayoutError, PvLayout, PvLayoutInput};
use crate::report::{BuildResult, Counting, Recording};
use crate::store::Store;
use crate::types::{pages_of_mib, DomId, Gfn, ORDER_2M, PAGE_BYTES};
use crate::vcpu;
use std::time::Instant;

/// Kernel size limit key (absolute path), decompressed bytes.
pub const KERNEL_MAX_KEY: &str = "/mh/limits/pv-kernel-max_size";
/// Ramdisk size limit key (absolute path).
pub const RAMDISK_MAX_KEY: &str = "/mh/limits/pv-ramdisk-max_size";
/// `XENFEAT_auto_translated_physmap`.
const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// Xen's part of a 64-bit PV address space, which a guest cannot map.
const XEN_AREA: (u64, u64) = (0xffff_8000_0000_0000, 0xffff_8800_0000_0000);
/// Kernel and ramdisk images are assembled and written this much at a time (4 MiB), so a
/// build never holds a second copy of a large kernel (fresh memory is dear in a PV dom0).
const IMAGE_CHUNK_BYTES: u64 = 4 << 20;

/// Build a PV guest.
pub fn build(env: BuildEnv<'_>, req: &BuildRequest) -> Result<BuildOutput> {
    let started = Instant::now();
    let hv = Counting::new(env.hv);
    let store = Recording::new(env.store);
    let domid = req.domid;
    if req.mem_start_mib == 0 {
        return Err(Error::InvalidRequest {
            step: "linux_build",
            reason: "mem_start_mib must be positive".into(),
        });
    }
    log::info!(
        "domid = {domid}; linux_build: mem_start_mib {} (mem_max_mib {} unused for PV)",
        req.mem_start_mib,
        req.mem_max_mib
    );

    let info = hv
        .domain_getinfo(domid)
        .map_err(Error::xc("xc_domain_getinfo"))?;
    if info.hvm {
        return Err(Error::InvalidRequest {
            step: "xc_dom_boot_xen_init",
            reason: format!("domain {domid} is an HVM container, not PV"),
        });
    }
    let flags = platform::read_platform(&store, domid, false, req.vgpu)?;
    let limits = Limits::read(&store)?;
    vcpu::configure_vcpus(&hv, domid, &flags)?;
    vcpu::configure_tsc(&hv, domid, flags.tsc_mode)?;

    let kernel = load_kernel(req, &limits)?;
    let ramdisk = load_ramdisk(req, &limits)?;
    let total_pages = pages_of_mib(req.mem_start_mib); // xc_dom_mem_init
    let (p2m, ram) = meminit_pv(&hv, domid, total_pages, req.mem_pnode)?;
    let mem = PvMemory {
        hv: &hv,
        domid,
        p2m,
    };
    let layout = build_image(&mem, req, &kernel, ramdisk.as_deref())?;
    boot_image(&mem, req, &kernel, &layout)?;

    let store_mfn = mem.mfn(layout.xenstore_pfn)?;
    let console_mfn = mem.mfn(layout.console_pfn)?;
    hv.gnttab_seed(
        domid,
        Gfn(console_mfn),
        Gfn(store_mfn),
        req.console_domid,
        req.store_domid,
    )
    .map_err(Error::xc("xc_dom_gnttab_init"))?;
    cpuid::construct_cpuid_policy(&hv, domid, &flags, false)?;
    let protocol = hv
        .get_native_protocol(domid)
        .map_err(Error::xc("xc_domain_get_native_protocol"))?;

    let result = BuildResult {
        store_mfn,
        console_mfn,
        protocol: Some(protocol),
    };
    let built = super::Built {
        layout: None,
        pod_target_pages: None,
        ram,
        result,
    };
    Ok(super::finish(
        env,
        super::BuildMode::Pv,
        req,
        started,
        &hv,
        &store,
        built,
    ))
}

/// `get_image_max_size`: decompressed size limits for the kernel and the ramdisk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Kernel, bytes.
    pub kernel: u64,
    /// Ramdisk, bytes.
    pub ramdisk: u64,
}

impl Limits {
    /// From `/mh/limits/pv-kernel-max_size` and `/mh/limits/pv-ramdisk-max_size`; absent,
    /// zero or unparsable means the default of 1 GiB (`XC_DOM_DECOMPRESS_MAX`).
    pub fn read(store: &dyn Store) -> Result<Self> {
        let get = |key: &str| -> Result<u64> {
            let v = store
                .read(key)
                .map_err(Error::store("get_image_max_size"))?;
            Ok(v.and_then(|s| s.trim().parse::<u64>().ok())
                .filter(|&n| n > 0)
                .unwrap_or(DEFAULT_MAX_IMAGE_BYTES))
        };
        Ok(Limits {
            kernel: get(KERNEL_MAX_KEY)?,
            ramdisk: get(RAMDISK_MAX_KEY)?,
        })
    }
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
fn load_kernel(req: &BuildRequest, limits: &Limits) -> Result<PvKernel> {
    let raw = image::read_file("xc_dom_kernel_file", &req.image, limits.kernel)?;
    let path = req.image.display().to_string();
    let bad = |step: &'static str, code: i32, reason: String| Error::Image {
        step,
        code,
        path: path.clone(),
        reason,
    };
    let (data, compression) = image::inflate_kernel_file(raw, limits.kernel)
        .map_err(|(code, reason)| bad("xc_dom_kernel_file", code, reason))?;
    parse_kernel(data, compression, limits.kernel, &req.features)
        .map_err(|(code, reason)| bad("xc_dom_parse_image", code, reason))
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
fn load_ramdisk(req: &BuildRequest, limits: &Limits) -> Result<Option<Vec<u8>>> {
    let Some(path) = req.ramdisk.as_ref().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(None);
    };
    let raw = image::read_file("xc_dom_module_file", path, limits.ramdisk)?;
    if !decompress::is_gzip(&raw) {
        return Ok(Some(raw));
    }
    match decompress::gunzip(&raw, limits.ramdisk) {
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
) -> Result<(Vec<u64>, PopulateStats)> {
    let step = "xc_dom_boot_mem_init";
    hv.domain_set_address_size(domid, 64)
        .map_err(Error::xc(step))?;
    let result = populate_pv(hv, domid, total_pages, pnode);
    let cancel = hv.domain_claim_pages(domid, 0).map_err(Error::xc(step));
    let out = result?;
    cancel?;
    Ok(out)
}

fn populate_pv(
    hv: &dyn Hypervisor,
    domid: DomId,
    total_pages: u64,
    pnode: Option<u32>,
) -> Result<(Vec<u64>, PopulateStats)> {
    let step = "xc_dom_boot_mem_init";
    let flags = pnode.map(MemFlags::exact).unwrap_or_default();
    let total = usize::try_from(total_pages).map_err(|_| Error::InvalidRequest {
        step,
        reason: format!("{total_pages} pages"),
    })?;
    let mut p2m: Vec<u64> = (0..total_pages).collect();
    let mut stats = PopulateStats::default();
    let sp = 1usize << ORDER_2M;
    let super_pages = total / sp;
    let mut cursor = 0usize; // first pfn not yet populated
    let mut left = super_pages;
    while left > 0 {
        let count = left.min(MAX_EXTENTS_PER_CALL);
        let mut extents: Vec<u64> = (0..count).map(|j| (cursor + j * sp) as u64).collect();
        let done = hv
            .domain_populate_physmap(domid, ORDER_2M, flags, &mut extents)
            .map_err(Error::xc(step))?
            .min(count);
        *stats.calls_by_order.entry(ORDER_2M).or_insert(0) += 1;
        *stats.pages_by_order.entry(ORDER_2M).or_insert(0) += (done * sp) as u64;
        for (j, &mfn) in extents.iter().take(done).enumerate() {
            for k in 0..sp {
                p2m[cursor + j * sp + k] = mfn + k as u64;
            }
        }
        cursor += done * sp;
        left -= done;
        if done < count {
            log::debug!(
                "domid = {domid}; {} of {count} 2 MiB extents; the rest falls back to 4 KiB",
                done
            );
            *stats.fallback_extents_by_order.entry(ORDER_2M).or_insert(0) += left as u64;
            break;
        }
    }
    while cursor < total {
        let n = (total - cursor).min(MAX_EXTENTS_PER_CALL);
        let chunk = &mut p2m[cursor..cursor + n];
        let done = hv
            .domain_populate_physmap(domid, 0, flags, chunk)
            .map_err(Error::xc(step))?
            .min(n);
        *stats.calls_by_order.entry(0).or_insert(0) += 1;
        *stats.pages_by_order.entry(0).or_insert(0) += done as u64;
        if done < n {
            let populated = stats.pages();
            let node = match pnode {
                Some(n) => format!(" on node {n} (exact)"),
                None => String::new(),
            };
            return Err(Error::Xc {
                step,
                source: XcError {
                    function: "xc_domain_populate_physmap",
                    code: libc::ENOMEM,
                    message: format!(
                        "failed to allocate {total_pages:#x} pages{node}: {populated} populated, short by {}",
                        total_pages - populated
                    ),
                },
            });
        }
        cursor += n;
    }
    log::info!(
        "PHYSICAL MEMORY ALLOCATION: 4KB PAGES: {:#x} 2MB PAGES: {:#x}",
        stats.pages_by_order.get(&0).unwrap_or(&0),
        stats.pages_by_order.get(&ORDER_2M).unwrap_or(&0) >> ORDER_2M
    );
    Ok((p2m, stats))
}

/// Guest memory of a PV domain, by frame number, through the p2m.
pub struct PvMemory<'a> {
    hv: &'a dyn Hypervisor,
    domid: DomId,
    p2m: Vec<u64>,
}

impl PvMemory<'_> {
    /// The MFN of guest frame `pfn`.
    pub fn mfn(&self, pfn: u64) -> Result<u64> {
        usize::try_from(pfn)
            .ok()
            .and_then(|i| self.p2m.get(i).copied())
            .ok_or_else(|| Error::InvalidRequest {
                step: "xc_dom_p2m",
                reason: format!("pfn {pfn:#x} is beyond the p2m ({} frames)", self.p2m.len()),
            })
    }

    /// `[pfn, pfn + pages)` as runs of consecutive MFNs: `(first pfn, first mfn, pages)`.
    fn runs(&self, pfn: u64, pages: u64) -> Result<Vec<(u64, u64, u64)>> {
        let mut runs: Vec<(u64, u64, u64)> = Vec::new();
        for p in pfn..pfn + pages {
            let m = self.mfn(p)?;
            match runs.last_mut() {
                Some((_, m0, n)) if *m0 + *n == m => *n += 1,
                _ => runs.push((p, m, 1)),
            }
        }
        Ok(runs)
    }

    /// Write `data` to the frames from `pfn`, page by page (one call per MFN run).
    pub fn write(&self, step: &'static str, pfn: u64, data: &[u8]) -> Result<()> {
        let pages = (data.len() as u64).div_ceil(PAGE_BYTES);
        for (p, m, n) in self.runs(pfn, pages)? {
            let from = ((p - pfn) * PAGE_BYTES) as usize;
            let to = (from + (n * PAGE_BYTES) as usize).min(data.len());
            self.hv
                .write_guest(self.domid, m * PAGE_BYTES, &data[from..to])
                .map_err(Error::xc(step))?;
        }
        Ok(())
    }

    /// Write a `bytes`-long image from `pfn`, whole pages, [`IMAGE_CHUNK_BYTES`] at a time:
    /// each chunk starts zeroed and `fill(offset, chunk)` copies in what the image has there
    /// (libxenguest zeroes a segment, then loads into it).
    pub fn write_image(
        &self,
        step: &'static str,
        pfn: u64,
        bytes: u64,
        mut fill: impl FnMut(u64, &mut [u8]),
    ) -> Result<()> {
        let bytes = bytes.div_ceil(PAGE_BYTES) * PAGE_BYTES;
        let mut buf = vec![0u8; bytes.min(IMAGE_CHUNK_BYTES) as usize];
        let mut offset = 0;
        while offset < bytes {
            let chunk = &mut buf[..(bytes - offset).min(IMAGE_CHUNK_BYTES) as usize];
            chunk.fill(0);
            fill(offset, chunk);
            self.write(step, pfn + offset / PAGE_BYTES, chunk)?;
            offset += chunk.len() as u64;
        }
        Ok(())
    }

    /// Clear `pages` frames from `pfn` (`xc_clear_domain_pages` on their MFNs).
    pub fn clear(&self, step: &'static str, pfn: u64, pages: u64) -> Result<()> {
        for (_, m, n) in self.runs(pfn, pages)? {
            self.hv
                .clear_domain_pages(self.domid, Gfn(m), n)
                .map_err(Error::xc(step))?;
        }
        Ok(())
    }
}

/// `xc_dom_build_image`: plan the layout, load the kernel and the ramdisk, clear the rings.
fn build_image(
    mem: &PvMemory<'_>,
    req: &BuildRequest,
    kernel: &PvKernel,
    ramdisk: Option<&[u8]>,
) -> Result<PvLayout> {
    let step = "xc_dom_build_image";
    let layout_error = |e: LayoutError| {
        let code = match e {
            LayoutError::NoRoom(_) => libc::ENOMEM,
            LayoutError::BadAddress(_) => libc::EINVAL,
        };
        Error::Image {
            step,
            code,
            path: req.image.display().to_string(),
            reason: e.to_string(),
        }
    };
    let layout = pv_layout::plan(&PvLayoutInput {
        total_pages: mem.p2m.len() as u64,
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
            let bytes = &kernel.elf[seg.offset as usize..(seg.offset + seg.filesz) as usize];
            (seg.paddr - kernel.pstart, bytes)
        })
        .collect();
    mem.write_image(
        step,
        layout.kernel.pfn,
        layout.kernel.pages * PAGE_BYTES,
        |offset, chunk| {
            for &(at, bytes) in &segments {
                copy_overlap(at, bytes, offset, chunk);
            }
        },
    )?;
    if let (Some(seg), Some(data)) = (layout.ramdisk, ramdisk) {
        mem.write_image(step, seg.pfn, seg.pages * PAGE_BYTES, |offset, chunk| {
            copy_overlap(0, data, offset, chunk)
        })?;
    }
    // alloc_magic_pages_pv clears the two rings.
    mem.clear(step, layout.xenstore_pfn, 1)?;
    mem.clear(step, layout.console_pfn, 1)?;
    Ok(layout)
}

/// Copy into `chunk` (the image's bytes from `offset`) the part of `bytes` (the image's bytes
/// from `at`) that falls in it.
fn copy_overlap(at: u64, bytes: &[u8], offset: u64, chunk: &mut [u8]) {
    let start = at.max(offset);
    let end = (at + bytes.len() as u64).min(offset + chunk.len() as u64);
    if start < end {
        let (from, to) = ((start - at) as usize, (start - offset) as usize);
        let n = (end - start) as usize;
        chunk[to..to + n].copy_from_slice(&bytes[from..from + n]);
    }
}

/// `xc_dom_boot_image` for x86_64 PV: p2m list and page tables, start_info, hypercall page,
/// L4 pin, shared info, the boot vCPU.
fn boot_image(
    mem: &PvMemory<'_>,
    req: &BuildRequest,
    kernel: &PvKernel,
    layout: &PvLayout,
) -> Result<()> {
    let step = "xc_dom_boot_image";
    let hv = mem.hv;
    let domid = mem.domid;
    let shared_info_mfn = hv
        .domain_shared_info_frame(domid)
        .map_err(Error::xc(step))?;

    // setup_pgtables_x86_64: the p2m list, then every table.
    let mut list = Vec::with_capacity((layout.p2m_list_pages * PAGE_BYTES) as usize);
    for &m in &mem.p2m {
        list.extend_from_slice(&m.to_le_bytes());
    }
    list.resize((layout.p2m_list_pages * PAGE_BYTES) as usize, 0);
    mem.write(step, layout.p2m.pfn, &list)?;
    drop(list);
    let tables = layout.page_tables(&mem.p2m).map_err(|e| Error::Image {
        step,
        code: libc::EINVAL,
        path: req.image.display().to_string(),
        reason: e.to_string(),
    })?;
    // Consecutive table frames are written together.
    let mut i = 0;
    while i < tables.len() {
        let mut j = i + 1;
        while j < tables.len() && tables[j].0 == tables[j - 1].0 + 1 {
            j += 1;
        }
        let mut bytes = Vec::with_capacity((j - i) * PAGE_BYTES as usize);
        for (_, t) in &tables[i..j] {
            for e in t.iter() {
                bytes.extend_from_slice(&e.to_le_bytes());
            }
        }
        mem.write(step, tables[i].0, &bytes)?;
        i = j;
    }

    // start_info_x86_64
    let store_mfn = mem.mfn(layout.xenstore_pfn)?;
    let console_mfn = mem.mfn(layout.console_pfn)?;
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
        shared_info: shared_info_mfn * PAGE_BYTES,
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
    mem.write(step, layout.start_info_pfn, &si.page())?;

    // setup_hypercall_page
    if let Some(va) = kernel.notes.hypercall_page {
        let pfn = va.wrapping_sub(kernel.virt_base) >> 12;
        if !(layout.kernel.pfn..layout.kernel.pfn + layout.kernel.pages).contains(&pfn) {
            return Err(Error::Image {
                step,
                code: libc::EINVAL,
                path: req.image.display().to_string(),
                reason: format!("HYPERCALL_PAGE {va:#x} is outside the kernel image"),
            });
        }
        hv.hypercall_page_init(domid, mem.mfn(pfn)?)
            .map_err(Error::xc(step))?;
    }

    // bootlate_pv: pin the L4, then shared info with every upcall masked.
    let l4_mfn = mem.mfn(layout.pgtables.pfn)?;
    hv.mmuext_pin_l4_table(domid, l4_mfn)
        .map_err(Error::xc(step))?;
    hv.write_guest(domid, shared_info_mfn * PAGE_BYTES, &pv_shared_info_page())
        .map_err(Error::xc(step))?;

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
        cr3: l4_mfn << 12,
        dr6: X86_DR6_DEFAULT,
        dr7: X86_DR7_DEFAULT,
        vm_assist: 0,
    };
    hv.vcpu_setcontext_pv(domid, 0, &ctx)
        .map_err(Error::xc(step))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_overlap_copies_only_the_shared_part() {
        let mut chunk = [0u8; 4];
        copy_overlap(2, b"abcdef", 0, &mut chunk); // image bytes 2..8, chunk 0..4
        assert_eq!(&chunk, b"\0\0ab");
        let mut chunk = [0u8; 4];
        copy_overlap(2, b"abcdef", 4, &mut chunk); // chunk 4..8
        assert_eq!(&chunk, b"cdef");
        let mut chunk = [9u8; 4];
        copy_overlap(20, b"abc", 4, &mut chunk); // no overlap: untouched
        assert_eq!(chunk, [9; 4]);
        let mut chunk = [0u8; 2];
        copy_overlap(0, b"abcdef", 3, &mut chunk); // inside the bytes
        assert_eq!(&chunk, b"de");
    }
}
