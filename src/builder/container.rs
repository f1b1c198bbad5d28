//! What the HVM and PVH builds share: both build an HVM container (a translated domain
//! booted in flat 32-bit protected mode at a physical entry with an `hvm_start_info`), so
//! they share the safety checks, RAM population, image loading, the special pages, the boot
//! vCPU and the closing grants, params and CPUID policy. Only the device model differs: HVM
//! has one (VGA hole, ioreq-server pages, `hvm_info`), PVH does not.

use super::ctx::BuildCtx;
use super::guest::GuestMemory;
use super::{BuildOutput, BuildRequest, Built};
use crate::boot::{self, param, Special};
use crate::cpuid;
use crate::error::{Error, ErrorKind, Result, Step};
use crate::hypervisor::{HvmBootVcpu, Hypervisor, MemFlags, XcError};
use crate::image::elf::Segment;
use crate::layout::HvmLayout;
use crate::memory::PopulateStats;
use crate::platform::PlatformFlags;
use crate::report::BuildResult;
use crate::types::{pages_of_mib, DomId, GuestPhys, MapAddr, MapFrame};

/// `hvm_safety_check`: refuse combinations Xen cannot run safely, unless `-force`.
pub(crate) fn safety_check(req: &BuildRequest, flags: &PlatformFlags, hap: bool) -> Result<()> {
    if req.force {
        log::info!("--force in effect - skipping safety checks");
        return Ok(());
    }
    let pod = req.mem_start_mib < req.mem_max_mib;
    let refuse = |msg| {
        log::info!("Safety checks failed.  Aborting domain build");
        Err(Error::new(Step::SafetyCheck, ErrorKind::Safety(msg)))
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

/// Guest RAM of an HVM container (`meminit_hvm`): the PoD target when start < max, then the
/// planned extents, from `-mem_pnode`'s node exactly when given, then the claim released.
/// `device_model` keeps the VGA hole unpopulated (HVM); `step` names failures as the C
/// xenguest does for the mode.
pub(crate) fn setup_ram(
    ctx: &BuildCtx<'_>,
    plan: &HvmLayout,
    device_model: bool,
    step: Step,
) -> Result<PopulateStats> {
    super::release_claim_after(&ctx.hv, ctx.domid, step, || {
        populate_ram(&ctx.hv, ctx.req, plan, device_model, step)
    })
}

fn populate_ram(
    hv: &dyn Hypervisor,
    req: &BuildRequest,
    plan: &HvmLayout,
    device_model: bool,
    step: Step,
) -> Result<PopulateStats> {
    let pod = req.mem_start_mib < req.mem_max_mib;
    if pod {
        hv.domain_set_pod_target(req.domid, pages_of_mib(req.mem_start_mib))
            .map_err(step.xc())?;
    }
    let mut flags = req.mem_pnode.map(MemFlags::exact).unwrap_or_default();
    flags.populate_on_demand = pod;
    let runs = crate::memory::plan_hvm_extents(
        &plan.ram_ranges_pages(),
        plan.mmio_hole_pages(),
        device_model,
    );
    let stats = crate::memory::populate(hv, req.domid, &runs, flags, step)?;
    let pages = |order: u32| stats.pages_by_order.get(&order).copied().unwrap_or(0);
    log::info!(
        "PHYSICAL MEMORY ALLOCATION: 4KB PAGES: {:#x} 2MB PAGES: {:#x} 1GB PAGES: {:#x}",
        pages(0),
        pages(9) >> 9,
        pages(18) >> 18
    );
    Ok(stats)
}

/// An ELF image's loadable segments at their physical addresses: the file bytes, then the
/// bss as bounded zero writes (never a buffer of its declared size).
pub(crate) fn load_segments(
    mem: &GuestMemory<'_>,
    data: &[u8],
    segments: &[Segment],
) -> Result<()> {
    for seg in segments {
        // In bounds: checked when the image was parsed.
        let bytes = &data[seg.file_range()];
        mem.write(Step::BuildImage, seg.paddr, bytes)?;
        mem.zero(
            Step::BuildImage,
            seg.paddr + seg.filesz,
            seg.memsz - seg.filesz,
        )?;
    }
    Ok(())
}

/// `xc_domain_populate_physmap_exact` of single pages at `gfns`: all of them, or an ENOMEM
/// error saying how many of `what` were populated.
pub(crate) fn populate_pages_exact(
    hv: &dyn Hypervisor,
    domid: DomId,
    gfns: &mut [u64],
    what: &str,
) -> Result<()> {
    let step = Step::BuildImage;
    let done = hv
        .domain_populate_physmap(domid, 0, MemFlags::default(), gfns)
        .map_err(step.xc())?;
    if done != gfns.len() {
        return Err(step.xc()(XcError {
            function: "xc_domain_populate_physmap_exact",
            code: libc::ENOMEM,
            message: format!("{what}: {done} of {} populated", gfns.len()),
        }));
    }
    Ok(())
}

/// `alloc_magic_pages_hvm`: the 8 special pages, cleared, their params set, the identity
/// page table written. With a device model (HVM, not PVH) the 8 ioreq-server pages below
/// them too, populated in the same call (libxenguest uses two), with their params.
pub(crate) fn setup_special_pages(
    hv: &dyn Hypervisor,
    domid: DomId,
    ioreq_server: bool,
) -> Result<()> {
    let step = Step::BuildImage;
    let plan = boot::special_pages(ioreq_server);
    let (first, nr) = (plan.first.0, plan.nr_pages);
    let mut gfns: Vec<u64> = (first..first + nr).collect();
    populate_pages_exact(hv, domid, &mut gfns, "special pages")?;
    hv.clear_domain_pages(domid, MapFrame::Gfn(plan.first), nr)
        .map_err(step.xc())?;
    // The params, the identity page table written before the one that points at it.
    let Some((&(ident_param, ident_paddr), others)) = plan.params.split_last() else {
        return Ok(());
    };
    for &(p, value) in others {
        hv.hvm_param_set(domid, p, value).map_err(step.xc())?;
    }
    hv.write_guest(
        domid,
        MapAddr::phys(GuestPhys(ident_paddr)),
        boot::ident_page_table(),
    )
    .map_err(step.xc())?;
    hv.hvm_param_set(domid, ident_param, ident_paddr)
        .map_err(step.xc())
}

/// `xc_dom_boot_image` for an HVM container (`bootlate_hvm` + `vcpu_hvm`): the event
/// channels, then the BSP in flat 32-bit protected mode at `entry`, `%ebx` = the start info;
/// PVH also sets every MTRR default to write-back (no hvmloader to do it).
pub(crate) fn boot_vcpu(
    ctx: &BuildCtx<'_>,
    entry: u32,
    start_info_paddr: u64,
    mtrr_write_back: bool,
) -> Result<()> {
    let step = Step::BootImage;
    let (hv, domid) = (&ctx.hv, ctx.domid);
    hv.hvm_param_set(domid, param::CONSOLE_EVTCHN, ctx.req.console_port.into())
        .map_err(step.xc())?;
    hv.hvm_param_set(domid, param::STORE_EVTCHN, ctx.req.store_port.into())
        .map_err(step.xc())?;
    let start_info_paddr =
        u32::try_from(start_info_paddr).map_err(|_| step.invalid("start info above 4 GiB"))?;
    hv.domain_hvm_set_boot_vcpu(
        domid,
        &HvmBootVcpu {
            entry,
            start_info_paddr,
            mtrr_write_back,
        },
    )
    .map_err(step.xc())
}

/// The end every HVM container build shares: grant entries for the console and xenstore
/// pages, the HVM params, the CPUID policy (the HVM maximum when there is no
/// `platform/featureset`, PVH too: see `builder::pvh`), then the result and report.
pub(crate) fn finish(
    ctx: BuildCtx<'_>,
    layout: HvmLayout,
    ram: PopulateStats,
) -> Result<BuildOutput> {
    let (hv, domid, req) = (&ctx.hv, ctx.domid, ctx.req);
    hv.gnttab_seed(
        domid,
        MapFrame::Gfn(Special::Console.gfn()),
        MapFrame::Gfn(Special::Xenstore.gfn()),
        req.console_domid,
        req.store_domid,
    )
    .map_err(Step::GnttabInit.xc())?;
    set_params(hv, domid, &ctx.flags)?;
    cpuid::construct_cpuid_policy(hv, domid, &ctx.flags, true)?;
    let built = Built {
        layout: Some(layout),
        pod_target_pages: (req.mem_start_mib < req.mem_max_mib)
            .then(|| pages_of_mib(req.mem_start_mib)),
        ram,
        result: BuildResult {
            store_mfn: Special::Xenstore.gfn().0,
            console_mfn: Special::Console.gfn().0,
            protocol: None,
        },
    };
    Ok(super::finish(&ctx, built))
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
fn set_params(hv: &dyn Hypervisor, domid: DomId, flags: &PlatformFlags) -> Result<()> {
    let step = Step::HvmBuildParams;
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
        .map_err(step.xc())?;
    if flags.x87_fip_width != 0
        && hv
            .hvm_param_get(domid, param::X87_FIP_WIDTH)
            .map_err(step.xc())?
            == 0
    {
        hv.hvm_param_set(domid, param::X87_FIP_WIDTH, flags.x87_fip_width.into())
            .map_err(step.xc())?;
    }
    set_time_offset(hv, domid, flags)
}

/// `xc_domain_set_time_offset` from `platform/timeoffset` (bounded to 32 bits by its parser).
pub(crate) fn set_time_offset(
    hv: &dyn Hypervisor,
    domid: DomId,
    flags: &PlatformFlags,
) -> Result<()> {
    hv.domain_set_time_offset(domid, flags.timeoffset_s)
        .map_err(Step::DomainSetTimeOffset.xc())
}
