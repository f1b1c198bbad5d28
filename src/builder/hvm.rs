//! The HVM build (`hvm_build`), step for step as the C xenguest's `stub_xc_hvm_build` with
//! libxenguest underneath: platform data, safety checks, vCPUs, layout, memory, firmware,
//! special pages, boot structures, params, CPUID.

use super::container;
use super::ctx::BuildCtx;
use super::guest::GuestMemory;
use super::{passthrough, BuildOutput, BuildRequest};
use crate::boot::{self, HvmInfo, StartModule};
use crate::error::{Error, Result, Step};
use crate::hypervisor::Hypervisor;
use crate::image::{
    self,
    elf::{Elf, Segment},
    summary::{self, Container},
};
use crate::layout::{self, HvmLayout, HvmLayoutInput};
use crate::placement;
use crate::platform::PlatformFlags;
use crate::store::{domain_path, Store};
use crate::types::{DomId, PAGE_BYTES};
use std::path::{Path, PathBuf};

/// Build an HVM guest, after the opening steps.
pub(super) fn build(ctx: BuildCtx<'_>) -> Result<BuildOutput> {
    let firmware = ctx.loading(|| load_firmware(&ctx.store, ctx.env.paths, ctx.req))?;
    let layout = plan_layout(&ctx)?;
    let ram = container::setup_ram(&ctx, &layout, true, Step::HvmSetupMem)?;
    write_layout(&ctx, &layout)?;
    let mem = GuestMemory::translated(&ctx.hv, ctx.domid);
    let start_info_paddr = load_images(&mem, &layout, &firmware)?;
    container::setup_special_pages(&ctx.hv, ctx.domid, true)?;
    write_hvm_info(&mem, &ctx.flags, &layout)?;
    container::boot_vcpu(&ctx, firmware.entry, start_info_paddr, false)?;
    container::finish(ctx, layout, ram)
}

/// hvmloader, the iPXE ROM and the `firmware` module (OVMF or SeaBIOS), read and checked.
struct Firmware {
    hvmloader: Vec<u8>,
    /// hvmloader's loadable segments (offsets checked against `hvmloader`).
    segments: Vec<Segment>,
    /// Lowest and highest physical address of the segments.
    bounds: (u64, u64),
    entry: u32,
    /// Modules in start-info order: OVMF or SeaBIOS ("firmware") first, then iPXE.
    modules: Vec<(Vec<u8>, &'static str)>,
}

fn load_firmware(
    store: &dyn Store,
    paths: &super::HostPaths,
    req: &BuildRequest,
) -> Result<Firmware> {
    let hvmloader = image::read_file(Step::KernelFile, &req.image, image::DEFAULT_MAX_IMAGE_BYTES)?;
    let bad = |reason: String| {
        Step::ParseImage.image(libc::EINVAL, req.image.display().to_string(), reason)
    };
    let elf = Elf::parse(&hvmloader).map_err(|e| bad(e.to_string()))?;
    if elf.has_xen_notes().map_err(|e| bad(e.to_string()))? {
        return Err(bad(
            "image has Xen notes: a PV or PVH kernel, not hvmloader".into(),
        ));
    }
    // xc_dom_parse_image in an HVM container (shared with libxenguest's view): firmware.
    let summary = summary::summarize(&elf, Container::Hvm).map_err(|e| bad(e.to_string()))?;
    let entry = u32::try_from(summary.entry)
        .map_err(|_| bad(format!("entry {:#x} above 4 GiB", summary.entry)))?;
    let (segments, bounds) = (elf.segments.clone(), summary.kernel_seg);

    let mut modules = Vec::new();
    if let Some((bios, path)) = firmware_module(store, paths, req.domid)? {
        let data = image::read_file(
            Step::LoadFirmwareModule,
            &path,
            image::DEFAULT_MAX_IMAGE_BYTES,
        )?;
        log::info!("Loaded {bios} from {}", path.display());
        modules.push((data, "firmware"));
    }
    let ipxe = image::read_file(
        Step::ModuleFile,
        &paths.ipxe,
        image::DEFAULT_MAX_IMAGE_BYTES,
    )?;
    modules.push((ipxe, "ipxe"));
    Ok(Firmware {
        hvmloader,
        segments,
        bounds,
        entry,
        modules,
    })
}

/// The `firmware` module hvmloader boots, named by `hvmloader/bios`: none (absent or empty: the
/// BIOS built into hvmloader, as XenServer's has), `ovmf` (OVMF; `platform/ovmf-override` names
/// a file beside it), or `seabios`. The C xenguest refuses `seabios`; we load it as libxl does
/// (tools/libs/light/libxl_dom.c, `libxl__load_hvm_firmware_module`), because an hvmloader
/// built without ROMBIOS (Debian's, upstream's default) has no BIOS of its own.
fn firmware_module(
    store: &dyn Store,
    paths: &super::HostPaths,
    domid: DomId,
) -> Result<Option<(&'static str, PathBuf)>> {
    let base = domain_path(domid);
    let read = |key: &str| {
        store
            .read(&format!("{base}/{key}"))
            .map_err(Step::LoadFirmwareModule.store())
    };
    match read("hvmloader/bios")?.as_deref() {
        None | Some("") => return Ok(None),
        Some("ovmf") => {}
        Some("seabios") => return Ok(Some(("SeaBIOS", paths.seabios.clone()))),
        Some(other) => {
            return Err(Step::LoadFirmwareModule.image(
                libc::ENOTSUP,
                format!("{base}/hvmloader/bios"),
                format!("Unsupported bios type '{other}'"),
            ))
        }
    }
    let Some(name) = read("platform/ovmf-override")? else {
        return Ok(Some(("OVMF", paths.ovmf.clone())));
    };
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(Error::platform(
            format!("{base}/platform/ovmf-override"),
            name.clone(),
            format!("ovmf-override key '{name}' must be a filename, not a path"),
        ));
    }
    Ok(Some((
        "OVMF",
        paths.ovmf.parent().unwrap_or(Path::new("/")).join(name),
    )))
}

/// The layout, with what passthrough devices need.
fn plan_layout(ctx: &BuildCtx<'_>) -> Result<HvmLayout> {
    let (req, flags) = (ctx.req, &ctx.flags);
    let sysfs = ctx.env.paths.sysfs_pci_devices.as_path();
    let needs = passthrough::scan(&ctx.hv, sysfs, &req.pci_passthrough)?;
    if req.vgpu {
        log::info!("NVIDIA vGPU plugged in. Add extra 0x10000000 to MMIO hole");
    }
    let plan = layout::plan_hvm(&HvmLayoutInput {
        mem_max_mib: req.mem_max_mib,
        min_mmio_hole_bytes: flags.mmio_hole_size_bytes,
        vgpu: req.vgpu,
        passthrough_bar_bytes: needs.bar_bytes,
        mxgpu: needs.mxgpu,
        rmrrs: needs.rmrrs,
    })?;
    for e in &plan.e820 {
        log::debug!("e820 {e}");
    }
    log::info!("Final lower MMIO hole size is {:#x}", plan.mmio_size);
    Ok(plan)
}

/// Tell qemu-wrapper and DEMU about the layout, and give Xen the e820.
fn write_layout(ctx: &BuildCtx<'_>, plan: &HvmLayout) -> Result<()> {
    let base = domain_path(ctx.domid);
    let write = |key: &str, value: String| {
        ctx.store
            .write(&format!("{base}/{key}"), &value)
            .map_err(Step::HvmSetupMem.store())
    };
    if let Some(addr) = plan.vram_reserved_addr {
        log::info!(
            "Reserve VRAM region at {addr:#x} size {:#x} for vGPU",
            layout::VRAM_RESERVED_BYTES
        );
        write("vm-data/vram-reserved-addr", format!("{addr:x}"))?;
        write(
            "vm-data/vram-reserved-size",
            layout::VRAM_RESERVED_BYTES.to_string(),
        )?;
    }
    write("vm-data/mmio-hole-size", plan.mmio_size.to_string())?;
    ctx.hv
        .domain_set_memory_map(ctx.domid, &plan.e820)
        .map_err(Step::DomainSetMemoryMap.xc())
}

/// `xc_dom_build_image` for hvmloader: its segments at their physical addresses, then each
/// module and the `hvm_start_info` page by page after the image, all below the MMIO hole.
/// Returns the start info's address.
fn load_images(mem: &GuestMemory<'_>, plan: &HvmLayout, fw: &Firmware) -> Result<u64> {
    let step = Step::BuildImage;
    let rules = placement::Rules::Hvm {
        low_ram_start: layout::LOW_RAM_START,
    };
    let sizes: Vec<u64> = fw
        .modules
        .iter()
        .map(|(data, _)| data.len() as u64)
        .collect();
    let names: Vec<&str> = fw.modules.iter().map(|(_, name)| *name).collect();
    let limit = plan.lowmem_end.min(plan.mmio_start);
    let start_info_bytes = boot::hvm_start_info_bytes() as u64;
    let placed = placement::plan(rules, fw.bounds, limit, &sizes, start_info_bytes)
        .map_err(|e| step.image(libc::ENOMEM, e.what(rules, &names), e.to_string()))?;
    container::load_segments(mem, &fw.hvmloader, &fw.segments)?;
    let mut modules = Vec::new();
    for ((data, cmdline), &paddr) in fw.modules.iter().zip(&placed.modules_paddr) {
        mem.write(step, paddr, data)?;
        modules.push(StartModule {
            paddr,
            size: data.len() as u64,
            cmdline: (*cmdline).into(),
        });
    }
    let start_info = boot::hvm_start_info(placed.start_info_paddr, &modules);
    mem.write(step, placed.start_info_paddr, &start_info)?;
    Ok(placed.start_info_paddr)
}

/// `bootlate_hvm` and the C `hvm_build_set_params` table update, merged: one write of the
/// final `hvm_info` table in its page.
fn write_hvm_info(mem: &GuestMemory<'_>, flags: &PlatformFlags, plan: &HvmLayout) -> Result<()> {
    let step = Step::BootImage;
    let info = boot::hvm_info_table(&HvmInfo {
        apic_mode: flags.apic,
        nr_vcpus: flags.vcpus,
        vcpus_online: flags.vcpus_current,
        lowmem_end: plan.lowmem_end,
        highmem_end: plan.highmem_end,
        reserved_mem_pgstart: boot::IOREQ_SERVER_GFN.0,
    });
    let page = boot::HVM_INFO_GFN.paddr();
    mem.zero(step, page, PAGE_BYTES)?;
    mem.write(step, page + boot::HVM_INFO_OFFSET, &info)
}
