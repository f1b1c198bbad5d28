//! The HVM build (`hvm_build`), step for step as the C xenguest's `stub_xc_hvm_build` with
//! libxenguest underneath: platform data, safety checks, vCPUs, layout, memory, firmware,
//! special pages, boot structures, params, CPUID.

use super::{passthrough, BuildEnv, BuildOutput, BuildRequest};
use crate::boot::{self, param, HvmInfo, Special, StartModule};
use crate::cpuid;
use crate::error::{Error, Result};
use crate::hypervisor::{HvmBootVcpu, Hypervisor, MemFlags};
use crate::image::{
    self,
    elf::{Elf, Segment},
    summary::{self, Container},
};
use crate::layout::{self, HvmLayout, HvmLayoutInput};
use crate::memory::PopulateStats;
use crate::platform::{self, PlatformFlags};
use crate::report::{BuildResult, Counting, Recording};
use crate::store::{domain_path, Store};
use crate::types::{pages_of_bytes, pages_of_mib, DomId, Gfn, PAGE_BYTES};
use crate::vcpu;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Build an HVM guest.
pub fn build(env: BuildEnv<'_>, req: &BuildRequest) -> Result<BuildOutput> {
    let started = Instant::now();
    let hv = Counting::new(env.hv);
    let store = Recording::new(env.store);
    let domid = req.domid;
    super::check_container_sizes(req, "hvm_build")?;
    log::info!(
        "domid = {domid}; hvm_build: mem_max_mib {} mem_start_mib {}",
        req.mem_max_mib,
        req.mem_start_mib
    );

    let info = hv
        .domain_getinfo(domid)
        .map_err(Error::xc("xc_domain_getinfo"))?;
    if !info.hvm {
        return Err(Error::InvalidRequest {
            step: "xc_dom_boot_xen_init",
            reason: format!("domain {domid} is not an HVM container"),
        });
    }
    let flags = platform::read_platform(&store, domid, true, req.vgpu)?;
    safety_check(req, &flags, info.hap)?;
    vcpu::configure_vcpus(&hv, domid, &flags)?;
    vcpu::configure_tsc(&hv, domid, flags.tsc_mode)?;

    let firmware = load_firmware(&store, env.paths, req)?;
    let hvm_layout = plan_layout(&hv, env.paths.sysfs_pci_devices.as_path(), req, &flags)?;
    let ram = setup_memory(&hv, domid, req, &hvm_layout)?;
    write_layout(&hv, &store, domid, &hvm_layout)?;

    let start_info_paddr = load_images(&hv, domid, &hvm_layout, &firmware)?;
    setup_special_pages(&hv, domid, true)?;
    boot_late(
        &hv,
        domid,
        req,
        &flags,
        &hvm_layout,
        firmware.entry,
        start_info_paddr,
    )?;
    finish_container(
        env,
        super::BuildMode::Hvm,
        req,
        started,
        &hv,
        &store,
        &flags,
        hvm_layout,
        ram,
    )
}

/// The end every HVM container build shares (HVM and PVH): grant entries for the console
/// and xenstore pages, the HVM params, the CPUID policy (the HVM maximum when there is no
/// `platform/featureset`: see `builder::pvh` for why PVH too), then the result and report.
#[allow(clippy::too_many_arguments)]
pub(super) fn finish_container(
    env: BuildEnv<'_>,
    mode: super::BuildMode,
    req: &BuildRequest,
    started: Instant,
    hv: &Counting<'_>,
    store: &Recording<'_>,
    flags: &PlatformFlags,
    layout: HvmLayout,
    ram: PopulateStats,
) -> Result<BuildOutput> {
    let domid = req.domid;
    hv.gnttab_seed(
        domid,
        Special::Console.gfn(),
        Special::Xenstore.gfn(),
        req.console_domid,
        req.store_domid,
    )
    .map_err(Error::xc("xc_dom_gnttab_init"))?;
    set_params(hv, domid, flags)?;
    cpuid::construct_cpuid_policy(hv, domid, flags, true)?;

    let result = BuildResult {
        store_mfn: Special::Xenstore.gfn().0,
        console_mfn: Special::Console.gfn().0,
        protocol: None,
    };
    let built = super::Built {
        layout: Some(layout),
        pod_target_pages: (req.mem_start_mib < req.mem_max_mib)
            .then(|| pages_of_mib(req.mem_start_mib)),
        ram,
        result,
    };
    Ok(super::finish(env, mode, req, started, hv, store, built))
}

/// `hvm_safety_check`: refuse combinations Xen cannot run safely, unless `-force`.
pub(super) fn safety_check(req: &BuildRequest, flags: &PlatformFlags, hap: bool) -> Result<()> {
    if req.force {
        log::info!("--force in effect - skipping safety checks");
        return Ok(());
    }
    let pod = req.mem_start_mib < req.mem_max_mib;
    let refuse = |msg| {
        log::info!("Safety checks failed.  Aborting domain build");
        Err(Error::Safety(msg))
    };
    if pod && flags.nested_virt {
        return refuse("Populate on Demand and Nested Virtualisation are mutually exclusive");
    }
    if pod && !req.pci_passthrough.is_empty() {
        return refuse("Populate on Demand and PCI Passthrough are mutually exclusive");
    }
    if flags.nested_virt && !hap {
        return refuse("Shadow Paging and Nested Virtualisation are mutually exclusive");
    }
    Ok(())
}

/// hvmloader, the iPXE ROM and (for UEFI guests) OVMF, read and checked.
struct Firmware {
    hvmloader: Vec<u8>,
    /// hvmloader's loadable segments (offsets checked against `hvmloader`).
    segments: Vec<Segment>,
    /// Lowest and highest physical address of the segments.
    bounds: (u64, u64),
    entry: u32,
    /// Modules in start-info order: OVMF ("firmware") first, then iPXE.
    modules: Vec<(Vec<u8>, &'static str)>,
}

fn load_firmware(
    store: &dyn Store,
    paths: &super::HostPaths,
    req: &BuildRequest,
) -> Result<Firmware> {
    let hvmloader = image::read_file(
        "xc_dom_kernel_file",
        &req.image,
        image::DEFAULT_MAX_IMAGE_BYTES,
    )?;
    let bad = |reason: String| Error::Image {
        step: "xc_dom_parse_image",
        code: libc::EINVAL,
        path: req.image.display().to_string(),
        reason,
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
    if let Some(ovmf) = ovmf_path(store, paths, req.domid)? {
        let data = image::read_file(
            "hvm_load_firmware_module",
            &ovmf,
            image::DEFAULT_MAX_IMAGE_BYTES,
        )?;
        log::info!("Loaded OVMF from {}", ovmf.display());
        modules.push((data, "firmware"));
    }
    let ipxe = image::read_file(
        "xc_dom_module_file",
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

/// `hvmloader/bios` = `ovmf` selects OVMF; `platform/ovmf-override` names a file beside it.
fn ovmf_path(store: &dyn Store, paths: &super::HostPaths, domid: DomId) -> Result<Option<PathBuf>> {
    let base = domain_path(domid);
    let read = |key: &str| {
        store
            .read(&format!("{base}/{key}"))
            .map_err(Error::store("hvm_load_firmware_module"))
    };
    match read("hvmloader/bios")?.as_deref() {
        None | Some("") => return Ok(None),
        Some("ovmf") => {}
        Some(other) => {
            return Err(Error::Image {
                step: "hvm_load_firmware_module",
                code: libc::ENOTSUP,
                path: format!("{base}/hvmloader/bios"),
                reason: format!("Unsupported bios type '{other}'"),
            })
        }
    }
    let Some(name) = read("platform/ovmf-override")? else {
        return Ok(Some(paths.ovmf.clone()));
    };
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(Error::Platform {
            path: format!("{base}/platform/ovmf-override"),
            value: name.clone(),
            reason: format!("ovmf-override key '{name}' must be a filename, not a path"),
        });
    }
    Ok(Some(
        paths.ovmf.parent().unwrap_or(Path::new("/")).join(name),
    ))
}

/// The layout, with what passthrough devices need.
fn plan_layout(
    hv: &dyn Hypervisor,
    sysfs: &Path,
    req: &BuildRequest,
    flags: &PlatformFlags,
) -> Result<HvmLayout> {
    let needs = passthrough::scan(hv, sysfs, &req.pci_passthrough)?;
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

/// `meminit_hvm`: PoD target when start < max, RAM extents, and always the claim cancel.
fn setup_memory(
    hv: &dyn Hypervisor,
    domid: DomId,
    req: &BuildRequest,
    plan: &HvmLayout,
) -> Result<PopulateStats> {
    let result = super::populate_container_ram(hv, req, plan, true, "hvm_build_setup_mem");
    // libxenguest cancels any claim (also the toolstack's) on success and on failure.
    let cancel = hv
        .domain_claim_pages(domid, 0)
        .map_err(Error::xc("hvm_build_setup_mem"));
    let stats = result?;
    cancel?;
    Ok(stats)
}

/// Tell qemu-wrapper and DEMU about the layout, and give Xen the e820.
fn write_layout(
    hv: &dyn Hypervisor,
    store: &dyn Store,
    domid: DomId,
    plan: &HvmLayout,
) -> Result<()> {
    let base = domain_path(domid);
    let write = |key: &str, value: String| {
        store
            .write(&format!("{base}/{key}"), &value)
            .map_err(Error::store("hvm_build_setup_mem"))
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
    hv.domain_set_memory_map(domid, &plan.e820)
        .map_err(Error::xc("xc_domain_set_memory_map"))
}

/// `xc_dom_build_image` for hvmloader: its segments at their physical addresses, then each
/// module and the `hvm_start_info` page by page after the image, all below the MMIO hole.
/// Returns the start info's address.
fn load_images(hv: &dyn Hypervisor, domid: DomId, plan: &HvmLayout, fw: &Firmware) -> Result<u64> {
    let step = "xc_dom_build_image";
    let no_room = |what: &str, reason: String| Error::Image {
        step,
        code: libc::ENOMEM,
        path: what.into(),
        reason,
    };
    let limit = plan.lowmem_end.min(plan.mmio_start);
    let (start, end) = fw.bounds;
    if start < layout::LOW_RAM_START || end > limit {
        let low = layout::LOW_RAM_START;
        let reason =
            format!("segments [{start:#x}, {end:#x}) do not fit in low RAM [{low:#x}, {limit:#x})");
        return Err(no_room("hvmloader", reason));
    }
    for seg in &fw.segments {
        // In bounds: checked when the image was parsed.
        let bytes = &fw.hvmloader[seg.offset as usize..(seg.offset + seg.filesz) as usize];
        hv.write_guest(domid, seg.paddr, bytes)
            .map_err(Error::xc(step))?;
        let bss = seg.memsz - seg.filesz;
        if bss > 0 {
            hv.write_guest(domid, seg.paddr + seg.filesz, &vec![0; bss as usize])
                .map_err(Error::xc(step))?;
        }
    }
    let mut next = end.next_multiple_of(PAGE_BYTES);
    let mut modules = Vec::new();
    for (data, cmdline) in &fw.modules {
        let paddr = next;
        next += pages_of_bytes(data.len() as u64) * PAGE_BYTES;
        if next > limit {
            let reason = format!(
                "Insufficient space to load modules: {} bytes at {paddr:#x} pass {limit:#x}",
                data.len()
            );
            return Err(no_room(cmdline, reason));
        }
        hv.write_guest(domid, paddr, data)
            .map_err(Error::xc(step))?;
        modules.push(StartModule {
            paddr,
            size: data.len() as u64,
            cmdline: (*cmdline).into(),
        });
    }
    let start_info = boot::hvm_start_info(next, &modules);
    if next + start_info.len() as u64 > limit {
        let reason = format!("Insufficient space for the start info at {next:#x} below {limit:#x}");
        return Err(no_room("hvm_start_info", reason));
    }
    hv.write_guest(domid, next, &start_info)
        .map_err(Error::xc(step))?;
    Ok(next)
}

/// `xc_domain_populate_physmap_exact` of single pages at `gfns`: all of them, or an ENOMEM
/// error saying how many of `what` were populated.
pub(super) fn populate_pages_exact(
    hv: &dyn Hypervisor,
    domid: DomId,
    gfns: &mut [u64],
    what: &str,
) -> Result<()> {
    let done = hv
        .domain_populate_physmap(domid, 0, MemFlags::default(), gfns)
        .map_err(Error::xc(SPECIAL_PAGES_STEP))?;
    if done != gfns.len() {
        return Err(Error::Xc {
            step: SPECIAL_PAGES_STEP,
            source: crate::hypervisor::XcError {
                function: "xc_domain_populate_physmap_exact",
                code: libc::ENOMEM,
                message: format!("{what}: {done} of {} populated", gfns.len()),
            },
        });
    }
    Ok(())
}

/// The step special pages (and PVH's ACPI pages) are placed in.
const SPECIAL_PAGES_STEP: &str = "xc_dom_build_image";

/// `alloc_magic_pages_hvm`: the 8 special pages, cleared, their params set, the identity
/// page table written. With a device model (HVM, not PVH) the 8 ioreq-server pages below
/// them too, populated in the same call (libxenguest uses two), with their params.
pub(super) fn setup_special_pages(
    hv: &dyn Hypervisor,
    domid: DomId,
    ioreq_server: bool,
) -> Result<()> {
    let step = SPECIAL_PAGES_STEP;
    let (first, nr) = if ioreq_server {
        (
            boot::IOREQ_SERVER_GFN.0,
            boot::NR_IOREQ_SERVER_PAGES + boot::NR_SPECIAL_PAGES,
        )
    } else {
        (Special::Paging.gfn().0, boot::NR_SPECIAL_PAGES)
    };
    let mut gfns: Vec<u64> = (first..first + nr).collect();
    populate_pages_exact(hv, domid, &mut gfns, "special pages")?;
    hv.clear_domain_pages(domid, Gfn(first), nr)
        .map_err(Error::xc(step))?;
    for (p, value) in boot::special_page_params() {
        hv.hvm_param_set(domid, p, value).map_err(Error::xc(step))?;
    }
    if ioreq_server {
        hv.hvm_param_set(domid, param::IOREQ_SERVER_PFN, first)
            .map_err(Error::xc(step))?;
        hv.hvm_param_set(
            domid,
            param::NR_IOREQ_SERVER_PAGES,
            boot::NR_IOREQ_SERVER_PAGES,
        )
        .map_err(Error::xc(step))?;
    }
    hv.write_guest(
        domid,
        Special::IdentPt.gfn().paddr(),
        boot::ident_page_table(),
    )
    .map_err(Error::xc(step))?;
    hv.hvm_param_set(domid, param::IDENT_PT, Special::IdentPt.gfn().paddr())
        .map_err(Error::xc(step))
}

/// `bootlate_hvm` and the C `hvm_build_set_params` table update, merged: one write of the
/// final `hvm_info` table, the event channels, the boot vCPU.
fn boot_late(
    hv: &dyn Hypervisor,
    domid: DomId,
    req: &BuildRequest,
    flags: &PlatformFlags,
    plan: &HvmLayout,
    entry: u32,
    start_info_paddr: u64,
) -> Result<()> {
    let step = "xc_dom_boot_image";
    let info = boot::hvm_info_table(&HvmInfo {
        apic_mode: flags.apic,
        nr_vcpus: flags.vcpus,
        vcpus_online: flags.vcpus_current,
        lowmem_end: plan.lowmem_end,
        highmem_end: plan.highmem_end,
        reserved_mem_pgstart: boot::IOREQ_SERVER_GFN.0,
    });
    let page = boot::HVM_INFO_GFN.paddr();
    hv.write_guest(domid, page, &[0u8; PAGE_BYTES as usize])
        .map_err(Error::xc(step))?;
    hv.write_guest(domid, page + boot::HVM_INFO_OFFSET, &info)
        .map_err(Error::xc(step))?;
    hv.hvm_param_set(domid, param::CONSOLE_EVTCHN, req.console_port.into())
        .map_err(Error::xc(step))?;
    hv.hvm_param_set(domid, param::STORE_EVTCHN, req.store_port.into())
        .map_err(Error::xc(step))?;
    let start_info_paddr = u32::try_from(start_info_paddr).map_err(|_| Error::InvalidRequest {
        step,
        reason: "start info above 4 GiB".into(),
    })?;
    hv.domain_hvm_set_boot_vcpu(
        domid,
        &HvmBootVcpu {
            entry,
            start_info_paddr,
            mtrr_write_back: false,
        },
    )
    .map_err(Error::xc(step))
}

/// The viridian mask from the platform flags.
pub fn viridian_mask(flags: &PlatformFlags) -> u64 {
    use boot::viridian::*;
    let v = &flags.viridian;
    let mut mask = boot::HVMPV_BASE_FREQ | CPU_HOTPLUG;
    for (on, bit) in [
        (v.time_ref_count, TIME_REF_CNT),
        (v.reference_tsc, REFERENCE_TSC),
        (v.hcall_remote_tlb_flush, HCALL_REMOTE_TLB_FLUSH),
        (v.apic_assist, APIC_ASSIST),
        (v.crash_ctl, CRASH_CTL),
        (v.stimer, SYNIC | STIMER),
        (v.hcall_ipi, HCALL_IPI),
    ] {
        if on {
            mask |= bit;
        }
    }
    mask
}

/// `hvm_build_set_params`: viridian, HPET, triple fault, x87 FIP width, time offset.
pub(super) fn set_params(hv: &dyn Hypervisor, domid: DomId, flags: &PlatformFlags) -> Result<()> {
    let step = "hvm_build_params";
    if flags.viridian.enabled {
        let mask = viridian_mask(flags);
        log::info!("viridian base, mask {mask:#x}");
        // The C code ignores these return values; a refused enlightenment is logged.
        if let Err(e) = hv.hvm_param_set(domid, param::VIRIDIAN, mask) {
            log::warn!("HVM_PARAM_VIRIDIAN {mask:#x}: {e}");
        }
    }
    if let Err(e) = hv.hvm_param_set(domid, param::HPET_ENABLED, flags.hpet.into()) {
        log::warn!("HVM_PARAM_HPET_ENABLED: {e}");
    }
    hv.hvm_param_set(domid, param::TRIPLE_FAULT_REASON, boot::SHUTDOWN_CRASH)
        .map_err(Error::xc(step))?;
    if flags.x87_fip_width != 0
        && hv
            .hvm_param_get(domid, param::X87_FIP_WIDTH)
            .map_err(Error::xc(step))?
            == 0
    {
        hv.hvm_param_set(domid, param::X87_FIP_WIDTH, flags.x87_fip_width.into())
            .map_err(Error::xc(step))?;
    }
    // libxenctrl takes an int32_t, as the C xenguest passed it.
    hv.domain_set_time_offset(domid, flags.timeoffset_s as i32)
        .map_err(Error::xc("xc_domain_set_time_offset"))
}
