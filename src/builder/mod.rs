//! The builds. Each mode is one function that reads top to bottom as the C xenguest's named
//! steps, over the two seams; this module holds what they share.

pub mod container;
mod ctx;
mod guest;
pub mod hvm;
pub mod passthrough;
pub mod pv;
pub mod pvh;

use crate::hypervisor::Hypervisor;
// The request is parsed in crate::request; the builds take it from here.
use crate::error::Step;
use crate::report::{BuildReport, BuildResult};
use crate::request::BuildRequest;
use crate::store::Store;
use crate::types::DomId;
use std::path::{Path, PathBuf};

/// Which build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildMode {
    /// `hvm_build`: hvmloader and a device model.
    Hvm,
    /// `pvh_build`.
    Pvh,
    /// `linux_build` (PV).
    Pv,
}

impl BuildMode {
    /// The command-line mode name.
    pub fn name(self) -> &'static str {
        match self {
            BuildMode::Hvm => "hvm_build",
            BuildMode::Pvh => "pvh_build",
            BuildMode::Pv => "linux_build",
        }
    }

    /// The step a refused request reports (the mode's own name).
    pub fn step(self) -> Step {
        match self {
            BuildMode::Hvm => Step::HvmBuild,
            BuildMode::Pvh => Step::PvhBuild,
            BuildMode::Pv => Step::LinuxBuild,
        }
    }
}

/// Where firmware and host facts live. Defaults are XenServer's paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// The iPXE ROM loaded as module `ipxe` for every HVM guest (`IPXE_PATH`).
    pub ipxe: PathBuf,
    /// OVMF, for `hvmloader/bios = ovmf` (`OVMF_PATH`; overrides resolve in its folder).
    pub ovmf: PathBuf,
    /// SeaBIOS, for `hvmloader/bios = seabios` (libxl's `SEABIOS_PATH` on Debian).
    pub seabios: PathBuf,
    /// `/sys/bus/pci/devices`, for BAR sizes of passthrough devices.
    pub sysfs_pci_devices: PathBuf,
}

/// Where the iPXE ROM is looked for, in order: XenServer's `IPXE_PATH`, then Debian's iPXE
/// ROM for the RTL8139, the NIC XenServer emulates for HVM guests (package `ipxe-qemu`).
pub const IPXE_CANDIDATES: [&str; 2] = [
    "/usr/share/ipxe/ipxe.bin",
    "/usr/lib/ipxe/qemu/pxe-rtl8139.rom",
];

impl Default for HostPaths {
    fn default() -> Self {
        let ipxe = IPXE_CANDIDATES
            .iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or(&IPXE_CANDIDATES[0]);
        HostPaths {
            ipxe: ipxe.into(),
            ovmf: "/usr/share/edk2/OVMF-release.fd".into(),
            seabios: "/usr/share/seabios/bios-256k.bin".into(),
            sysfs_pci_devices: "/sys/bus/pci/devices".into(),
        }
    }
}

impl HostPaths {
    /// Defaults, overridden by `XENGUEST_IPXE`, `XENGUEST_OVMF`, `XENGUEST_SEABIOS` and
    /// `XENGUEST_SYSFS_PCI`.
    pub fn from_env() -> Self {
        let mut paths = HostPaths::default();
        if let Some(p) = std::env::var_os("XENGUEST_IPXE") {
            paths.ipxe = p.into();
        }
        if let Some(p) = std::env::var_os("XENGUEST_OVMF") {
            paths.ovmf = p.into();
        }
        if let Some(p) = std::env::var_os("XENGUEST_SEABIOS") {
            paths.seabios = p.into();
        }
        if let Some(p) = std::env::var_os("XENGUEST_SYSFS_PCI") {
            paths.sysfs_pci_devices = p.into();
        }
        paths
    }
}

/// The two seams and the host paths a build runs against.
#[derive(Clone, Copy)]
pub struct BuildEnv<'a> {
    /// The hypervisor (real or simulated).
    pub hv: &'a dyn Hypervisor,
    /// xenstore (real or in-memory).
    pub store: &'a dyn Store,
    /// Firmware and sysfs locations.
    pub paths: &'a HostPaths,
}

/// Run `f` (a memory step), then release the domain's claim whatever it returned, as
/// libxenguest does once it reaches memory setup (also the toolstack's claim): the one place
/// a successful build gives up its claim. A failed release fails the build at `step`.
pub(crate) fn release_claim_after<T>(
    hv: &dyn Hypervisor,
    domid: DomId,
    step: Step,
    f: impl FnOnce() -> crate::Result<T>,
) -> crate::Result<T> {
    let outcome = f();
    let cancel = hv.domain_claim_pages(domid, 0).map_err(step.xc());
    let value = outcome?;
    cancel?;
    Ok(value)
}

/// What a build produced, for [`finish`].
pub(crate) struct Built {
    /// HVM/PVH layout.
    pub layout: Option<crate::layout::HvmLayout>,
    /// PoD target, pages, when start < max.
    pub pod_target_pages: Option<u64>,
    /// RAM population.
    pub ram: crate::memory::PopulateStats,
    /// The result numbers.
    pub result: BuildResult,
}

/// The end of every build: the report from the seams' counting and recording wrappers, and
/// the one info line admins (and the e2e harness) read.
pub(crate) fn finish(ctx: &ctx::BuildCtx<'_>, built: Built) -> BuildOutput {
    let (mode, req) = (ctx.mode, ctx.req);
    let report = BuildReport {
        mode: mode.name(),
        domid: req.domid,
        layout: built.layout,
        memory: crate::report::MemoryReport {
            pod_target_pages: built.pod_target_pages,
            exact_node: req.mem_pnode,
            ram: built.ram,
            pages_by_node: ctx.env.hv.domain_pages_by_node(req.domid).ok(),
        },
        hypercalls: ctx.hv.counts(),
        xenstore_writes: ctx.store.writes(),
        result: Some(built.result.clone()),
        time: ctx.time_split(),
    };
    let pages = |order: u32| {
        report
            .memory
            .ram
            .pages_by_order
            .get(&order)
            .copied()
            .unwrap_or(0)
    };
    log::info!(
        "domid = {}; {} done: 1G {} 2M {} 4K {} pages in {} populate calls, {} hypercalls, {} us ({})",
        req.domid,
        mode.name(),
        pages(18),
        pages(9),
        pages(0),
        report.memory.ram.calls(),
        report.total_hypercalls(),
        report.time.elapsed_us,
        report.time
    );
    BuildOutput {
        result: built.result,
        report,
    }
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The numbers for `result:`.
    pub result: BuildResult,
    /// What was done.
    pub report: BuildReport,
}

/// Build `req` in `mode`.
///
/// A failed build leaves the domain for the caller to destroy, but never a claim on host
/// memory: libxenguest cancels claims only once it reaches memory setup; here every failure
/// does, so an early error cannot strand the toolstack's claim.
pub fn build(env: BuildEnv<'_>, mode: BuildMode, req: &BuildRequest) -> crate::Result<BuildOutput> {
    released_if_failed(env, req, build_mode(env, mode, req))
}

/// `outcome`, with the domain's claim released first if it is a failure.
fn released_if_failed(
    env: BuildEnv<'_>,
    req: &BuildRequest,
    outcome: crate::Result<BuildOutput>,
) -> crate::Result<BuildOutput> {
    if outcome.is_err() {
        if let Err(e) = env.hv.domain_claim_pages(req.domid, 0) {
            log::warn!(
                "domid = {}; releasing the claim after a failed build: {e}",
                req.domid
            );
        }
    }
    outcome
}

/// [`build`], stopped at its next check point once `cancel` is set (from any thread): it
/// then fails with [`ErrorKind::Cancelled`](crate::error::ErrorKind::Cancelled) at the step it
/// was in, the claim released as after any failed build. A build that completes before it
/// reaches another check point succeeds. One cancelled before it started names the mode's
/// step (`hvm_build`, ...), having made no call but the claim release.
pub fn build_cancellable(
    env: BuildEnv<'_>,
    mode: BuildMode,
    req: &BuildRequest,
    cancel: &crate::cancel::Cancel,
) -> crate::Result<BuildOutput> {
    if cancel.is_cancelled() {
        let cancelled = crate::Error::new(mode.step(), crate::error::ErrorKind::Cancelled);
        return released_if_failed(env, req, Err(cancelled));
    }
    cancel
        .scope(|| build(env, mode, req))
        .map_err(|e| match cancel.is_cancelled() {
            // Whatever the check point turned the refusal into (a failed call, an image that
            // could not be unpacked), the cause is the cancel.
            true => crate::Error::new(e.step, crate::error::ErrorKind::Cancelled),
            false => e,
        })
}

fn build_mode(
    env: BuildEnv<'_>,
    mode: BuildMode,
    req: &BuildRequest,
) -> crate::Result<BuildOutput> {
    let ctx = ctx::prepare(env, mode, req)?;
    match mode {
        BuildMode::Hvm => hvm::build(ctx),
        BuildMode::Pvh => pvh::build(ctx),
        BuildMode::Pv => pv::build(ctx),
    }
}

/// Open the real host for one build: a libxenctrl handle and a xenstored connection, failing
/// with the C xenguest's texts (`Failed to open xc interface`, `Failed to open xenstore
/// interface`).
#[cfg(feature = "xen")]
pub fn open_real_host() -> crate::Result<(
    crate::hypervisor::xenctrl::XenCtrl,
    crate::store::XenstoredStore,
)> {
    use crate::hypervisor::XcError;
    use crate::store::StoreError;
    let hv = crate::hypervisor::xenctrl::XenCtrl::open().map_err(|e| {
        Step::InterfaceOpen.xc()(XcError {
            message: format!("Failed to open xc interface: {}", e.message),
            ..e
        })
    })?;
    let store = crate::store::XenstoredStore::open().map_err(|e| {
        Step::XsOpen.store()(StoreError {
            op: "open",
            path: std::env::var("XENSTORED_PATH")
                .unwrap_or_else(|_| "/run/xenstored/socket".into()),
            code: e.raw_os_error().unwrap_or(libc::EIO),
            message: format!("Failed to open xenstore interface: {e}"),
        })
    })?;
    Ok((hv, store))
}
