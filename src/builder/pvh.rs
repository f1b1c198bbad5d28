//! The PVH build (`pvh_build`), step for step as the C xenguest's `stub_xc_hvm_build` with
//! `is_pvh` and libxenguest underneath: platform data, safety checks, vCPUs, image limits,
//! kernel (or xen-shim) and modules, `pvh_setup_mem`, `xenguest_dom_load_acpi`,
//! `pvh_setup_e820`, image and special pages, start info and boot vCPU, params, CPUID.
//!
//! No device model: no VGA hole (the first GiB can be one 1 GiB extent), no ioreq-server
//! pages, no `hvm_info` table; the kernel enters in flat 32-bit protected mode at its
//! `XEN_ELFNOTE_PHYS32_ENTRY` with `%ebx` pointing at the `hvm_start_info`.

use super::container;
use super::ctx::BuildCtx;
use super::guest::GuestMemory;
use super::{BuildOutput, BuildRequest};
use crate::acpi::{self, AcpiConfig, PvhAcpi};
use crate::boot::{self, StartModule};
use crate::error::{Result, Step};
use crate::hypervisor::Hypervisor;
use crate::image::{
    self, decompress,
    elf::{Elf, Segment},
    summary::{self, Container},
};
use crate::layout::{self, HvmLayout};
use crate::placement;
use crate::platform::PlatformFlags;
use crate::request::ImageLimits;
use crate::types::{E820Entry, PAGE_BYTES};
use std::path::Path;

/// Build a PVH guest, after the opening steps.
pub(super) fn build(ctx: BuildCtx<'_>) -> Result<BuildOutput> {
    check_request(ctx.req)?;
    let limits = ImageLimits::read(&ctx.store)?;
    let kernel = ctx.loading(|| load_kernel(&ctx.req.image, limits.kernel_bytes))?;
    let modules = ctx.loading(|| load_modules(ctx.req, limits.ramdisk_bytes))?;

    let mut plan = setup_layout(ctx.req)?;
    let ram = container::setup_ram(&ctx, &plan, false, Step::BootMemInit)?;
    let tables = load_acpi(&ctx.flags)?;
    plan.e820 = setup_e820(&ctx, &plan, &tables)?;

    let mem = GuestMemory::translated(&ctx.hv, ctx.domid);
    let start_info_paddr = build_image(&mem, ctx.req, &plan, &kernel, &modules, &tables)?;
    container::boot_vcpu(&ctx, kernel.entry, start_info_paddr, true)?;
    // Grants, params and CPUID as for HVM. Without platform/featureset that is the HVM
    // maximum, as libxl gives PVH guests: the C code passes `hvm = !is_pvh` and so the PV
    // maximum, which lacks PGE, and Debian's kernel triple-faults at its first write of
    // CR4.PGE (`make e2e` boots it).
    container::finish(ctx, plan, ram)
}

/// Sizes and modules that cannot make a guest are refused before anything is touched.
fn check_request(req: &BuildRequest) -> Result<()> {
    crate::request::validate(req).map_err(|e| e.at(Step::PvhBuild))
}

/// The kernel (or xen-shim), parsed: `xc_dom_kernel_file` + `xc_dom_parse_image`.
#[derive(Debug)]
struct Kernel {
    data: std::sync::Arc<[u8]>,
    /// Loadable segments (offsets checked against `data`).
    segments: Vec<Segment>,
    /// Lowest and highest physical address of the segments.
    bounds: (u64, u64),
    /// `XEN_ELFNOTE_PHYS32_ENTRY`.
    entry: u32,
}

fn load_kernel(path: &Path, limit: u64) -> Result<Kernel> {
    let fail = |step: Step, code: i32, reason: String| {
        step.image(code, path.display().to_string(), reason)
    };
    // libxenguest's loaders: a gzipped file is inflated, a bzImage's payload (any
    // compression) unwrapped; what is left must be the ELF kernel. A repeat of the same
    // file in this process reuses the unpacked image.
    let image::KernelImage { data, compression } =
        image::load_kernel_cached(Step::KernelFile, path, limit)?;
    if let Some(format) = compression {
        log::info!(
            "{}: {format}-compressed kernel, {} bytes unpacked",
            path.display(),
            data.len()
        );
    }
    let bad = |reason: String| fail(Step::ParseImage, libc::EINVAL, reason);
    let elf = Elf::parse(&data).map_err(|e| bad(e.to_string()))?;
    // Without Xen notes, libxenguest would take the image for HVM firmware.
    if !elf.has_xen_notes().map_err(|e| bad(e.to_string()))? {
        return Err(bad(
            "Not a Xen-ELF image: no Xen ELF notes found (a PVH kernel needs \
             XEN_ELFNOTE_PHYS32_ENTRY)"
                .into(),
        ));
    }
    // xc_dom_parse_image in an HVM container (shared with libxenguest's view).
    let summary = summary::summarize(&elf, Container::Hvm).map_err(|e| bad(e.to_string()))?;
    let bounds = summary.kernel_seg;
    // The summary's entry is PHYS32_ENTRY, a 32-bit note.
    let entry = u32::try_from(summary.entry)
        .map_err(|_| bad(format!("entry {:#x} above 4 GiB", summary.entry)))?;
    if bounds.0 % PAGE_BYTES != 0 {
        return Err(bad(format!(
            "segment boundary isn't page aligned: the image starts at {:#x}",
            bounds.0
        )));
    }
    log::info!(
        "{}: PVH image at [{:#x}, {:#x}), entry {entry:#x}",
        path.display(),
        bounds.0,
        bounds.1
    );
    let segments = elf.segments.clone();
    Ok(Kernel {
        data,
        segments,
        bounds,
        entry,
    })
}

/// A module's bytes and command line.
struct ModuleImage {
    data: Vec<u8>,
    cmdline: String,
}

/// `xc_dom_module_file` for each `-module`, then what `xc_dom_build_module` does with the
/// bytes: a gzip-compressed module that inflates within the limit is handed over inflated,
/// any other (or one that does not inflate) as it is.
fn load_modules(req: &BuildRequest, limit: u64) -> Result<Vec<ModuleImage>> {
    req.modules
        .iter()
        .map(|m| {
            let raw = image::read_file(Step::ModuleFile, &m.path, limit)?;
            let data = if decompress::is_gzip(&raw) {
                match decompress::gunzip(&raw, limit) {
                    Ok(data) => data,
                    Err(e) => {
                        log::info!("{}: gzip module kept compressed ({e})", m.path.display());
                        raw
                    }
                }
            } else {
                raw
            };
            Ok(ModuleImage {
                data,
                cmdline: m.cmdline.clone(),
            })
        })
        .collect()
}

/// `pvh_setup_mem`, the layout half: no passthrough, RAM from 0, a hole of exactly 256 MiB
/// below 4 GiB, the rest of RAM above 4 GiB. The e820 is filled by [`setup_e820`].
fn setup_layout(req: &BuildRequest) -> Result<HvmLayout> {
    if !req.pci_passthrough.is_empty() {
        log::error!("PCI passthrough not supported under PVH");
        return Err(Step::PvhSetupMem.invalid("PCI passthrough not supported under PVH"));
    }
    Ok(layout::plan_pvh(req.mem_max_mib))
}

/// `xenguest_dom_load_acpi`: the tables, from the vCPU count, online vCPUs and APIC mode.
fn load_acpi(flags: &PlatformFlags) -> Result<PvhAcpi> {
    let tables = acpi::build_pvh(&AcpiConfig {
        nr_vcpus: flags.vcpus,
        vcpus_online: flags.vcpus_current,
        apic_mode: flags.apic,
    })
    .map_err(|e| Step::LoadAcpi.invalid(e.to_string()))?;
    log::debug!("ACPI tables: {tables:?}");
    Ok(tables)
}

/// `pvh_setup_e820`: RAM from 0, an ACPI entry per module (page-aligned down, so the RSDP's
/// overlaps low RAM), RAM above 4 GiB; given to Xen for the guest's `XENMEM_memory_map`.
fn setup_e820(ctx: &BuildCtx<'_>, plan: &HvmLayout, tables: &PvhAcpi) -> Result<Vec<E820Entry>> {
    let modules: Vec<(u64, u64)> = tables
        .modules()
        .iter()
        .map(|m| (m.paddr, m.data.len() as u64))
        .collect();
    let e820 = layout::pvh_e820(plan, &modules);
    for e in &e820 {
        log::debug!("e820 {e}");
    }
    ctx.hv
        .domain_set_memory_map(ctx.domid, &e820)
        .map_err(Step::DomainSetMemoryMap.xc())?;
    Ok(e820)
}

/// `xc_dom_build_image` for a PVH kernel: its segments at their physical addresses, each
/// module page by page after it, the ACPI modules at their addresses (pages outside RAM
/// populated first), the special pages, then room for the start info after the modules.
/// Returns where the start info goes.
fn build_image(
    mem: &GuestMemory<'_>,
    req: &BuildRequest,
    plan: &HvmLayout,
    kernel: &Kernel,
    modules: &[ModuleImage],
    tables: &PvhAcpi,
) -> Result<u64> {
    let step = Step::BuildImage;
    let rules = placement::Rules::Pvh {
        rsdp_page: acpi::RSDP_ADDRESS - acpi::RSDP_ADDRESS % PAGE_BYTES,
    };
    let sizes: Vec<u64> = modules.iter().map(|m| m.data.len() as u64).collect();
    let start_info_bytes = boot::pvh_start_info_bytes(&req.cmdline, modules.len()) as u64;
    let placed = placement::plan(
        rules,
        kernel.bounds,
        plan.lowmem_end,
        &sizes,
        start_info_bytes,
    )
    .map_err(|e| step.image(libc::ENOMEM, e.what(rules, &[]), e.to_string()))?;
    container::load_segments(mem, &kernel.data, &kernel.segments)?;
    let mut started = Vec::new();
    for (m, &paddr) in modules.iter().zip(&placed.modules_paddr) {
        mem.write(step, paddr, &m.data)?;
        started.push(StartModule {
            paddr,
            size: m.data.len() as u64,
            cmdline: m.cmdline.clone(),
        });
    }

    load_acpi_modules(mem, plan, tables)?;
    container::setup_special_pages(mem.hv(), mem.domid(), false)?;

    let start_info_paddr = placed.start_info_paddr;
    let start_info =
        boot::pvh_start_info(start_info_paddr, &req.cmdline, &started, tables.rsdp.paddr);
    debug_assert_eq!(
        start_info.len() as u64,
        start_info_bytes,
        "the planned size"
    );
    mem.write(step, start_info_paddr, &start_info)?;
    Ok(start_info_paddr)
}

/// `xc_dom_load_acpi`: populate the ACPI pages that are not RAM (the info and table pages in
/// the hole; one call where libxenguest makes one per page) and copy the modules in. The
/// RSDP page lies in low RAM, already populated: libxenguest populates it again, which
/// leaks the page it replaces; here it is written in place.
fn load_acpi_modules(mem: &GuestMemory<'_>, plan: &HvmLayout, tables: &PvhAcpi) -> Result<()> {
    let step = Step::BuildImage;
    let ram = plan.ram_ranges_pages();
    let in_ram = |gfn: u64| ram.iter().any(|&(s, e)| gfn >= s && gfn < e);
    let mut gfns: Vec<u64> = tables
        .modules()
        .iter()
        .flat_map(|m| {
            let (first, end) = m.gfns();
            first..end
        })
        .filter(|gfn| !in_ram(*gfn))
        .collect();
    gfns.sort_unstable();
    gfns.dedup();
    if !gfns.is_empty() {
        container::populate_pages_exact(mem.hv(), mem.domid(), &mut gfns, "ACPI pages")?;
    }
    for m in tables.modules() {
        mem.write(step, m.paddr, &m.data)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::DomId;

    #[test]
    fn passthrough_is_refused() {
        let mut req = BuildRequest::new(DomId(1), 1024, 1024, "/k");
        req.pci_passthrough.push(crate::hypervisor::PciSbdf {
            seg: 0,
            bus: 1,
            dev: 0,
            func: 0,
        });
        let e = setup_layout(&req).unwrap_err();
        assert_eq!(
            e.wire_line(),
            "xenguest: pvh_setup_mem: [22] PCI passthrough not supported under PVH"
        );
    }

    #[test]
    fn requests_past_the_limits_are_refused() {
        let mut req = BuildRequest::new(DomId(1), 1024, 1024, "/k");
        req.modules = (0..11)
            .map(|i| crate::request::Module {
                path: format!("/m{i}").into(),
                cmdline: String::new(),
            })
            .collect();
        let e = check_request(&req).unwrap_err();
        assert!(e.to_string().contains("11 modules given"), "{e}");
        req.modules.truncate(1);
        req.modules[0].cmdline = "x".repeat(1024);
        assert!(check_request(&req).is_err());
        req.modules[0].cmdline = "x".repeat(1023);
        assert!(check_request(&req).is_ok());
    }
}
