//! The context every build step runs in, and [`prepare`]: the opening steps the three modes
//! share (the request's sizes, the domain's kind and memory bounds, the platform keys, the
//! safety checks, vCPUs and TSC), in the C xenguest's order.

use super::{BuildEnv, BuildMode, BuildRequest};
use crate::error::{Error, ErrorKind, Result, Step};
use crate::hypervisor::{DomainInfo, Hypervisor, PhysInfo};
use crate::platform::{self, PlatformFlags};
use crate::report::{Counting, Recording};
use crate::types::{pages_of_mib, DomId};
use crate::vcpu;
use std::cell::Cell;
use std::time::{Duration, Instant};

/// One build in progress: the seams (wrapped to count calls and record writes), the request
/// and what the opening steps learnt.
pub(crate) struct BuildCtx<'a> {
    /// The seams and host paths as the caller gave them.
    pub env: BuildEnv<'a>,
    /// The hypervisor, counting calls for the report.
    pub hv: Counting<'a>,
    /// The store, recording writes for the report.
    pub store: Recording<'a>,
    /// What was asked for.
    pub req: &'a BuildRequest,
    /// `req.domid`.
    pub domid: DomId,
    /// Which build.
    pub mode: BuildMode,
    /// When the build started (for the report).
    pub started: Instant,
    /// The platform keys, parsed.
    pub flags: PlatformFlags,
    /// Time spent loading images, outside the seams (see [`BuildCtx::loading`]).
    images: Cell<Duration>,
}

impl BuildCtx<'_> {
    /// Run `f`, which reads, unpacks or parses images (kernel, firmware, modules), counting
    /// its time, less any spent in the seams meanwhile, as image time for the report.
    pub(crate) fn loading<T>(&self, f: impl FnOnce() -> T) -> T {
        let (started, hv, store) = (Instant::now(), self.hv.busy(), self.store.busy());
        let value = f();
        let seams = (self.hv.busy() - hv) + (self.store.busy() - store);
        self.images
            .set(self.images.get() + started.elapsed().saturating_sub(seams));
        value
    }

    /// Where the build's time went so far.
    pub(crate) fn time_split(&self) -> crate::report::TimeSplit {
        crate::report::TimeSplit::of(
            self.started.elapsed(),
            self.hv.busy(),
            self.store.busy(),
            self.images.get(),
        )
    }
}

/// Pages of guest RAM a request allocates at build time: the PoD target when an HVM or PVH
/// guest starts below its maximum, else all of it (PV has no maximum at build time).
pub(crate) fn build_time_pages(mode: BuildMode, req: &BuildRequest) -> u64 {
    match mode {
        BuildMode::Pv => pages_of_mib(req.mem_start_mib),
        BuildMode::Hvm | BuildMode::Pvh => pages_of_mib(req.mem_start_mib.min(req.mem_max_mib)),
    }
}

/// Sizes that cannot make a guest of `mode`, refused before anything is touched (pure).
pub(crate) fn check_sizes(mode: BuildMode, req: &BuildRequest) -> Result<()> {
    let step = mode.step();
    if req.mem_start_mib == 0 {
        return Err(step.invalid("mem_start_mib must be positive"));
    }
    if mode != BuildMode::Pv && req.mem_start_mib > req.mem_max_mib {
        return Err(step.invalid(format!(
            "mem_start_mib {} exceeds mem_max_mib {}",
            req.mem_start_mib, req.mem_max_mib
        )));
    }
    // PV builds ignore mem_max_mib; the guest is mem_start_mib.
    let (name, mib) = match mode {
        BuildMode::Pv => ("mem_start_mib", req.mem_start_mib),
        BuildMode::Hvm | BuildMode::Pvh => ("mem_max_mib", req.mem_max_mib),
    };
    if mib > crate::MAX_GUEST_MIB {
        return Err(step.invalid(format!("{name} {mib} exceeds {} MiB", crate::MAX_GUEST_MIB)));
    }
    Ok(())
}

/// The request against the domain and the host, before anything proportional to it is
/// allocated (pure): Xen would refuse every page past the domain's `max_pages`, and cannot
/// give more than the host has free (less what other domains have claimed). This is Xen's own
/// gate, so nothing Xen would build is refused; what it would refuse fails here in
/// milliseconds instead of after a long populate.
pub(crate) fn check_fits(
    mode: BuildMode,
    req: &BuildRequest,
    info: &DomainInfo,
    host: &PhysInfo,
) -> Result<()> {
    let wanted_pages = build_time_pages(mode, req);
    let no_room = |reason: String| Error::new(mode.step(), ErrorKind::NoRoom(reason));
    if wanted_pages > info.max_pages {
        return Err(no_room(format!(
            "the guest needs {wanted_pages} pages but domain {} may have at most {} \
             (max_pages)",
            req.domid, info.max_pages
        )));
    }
    // Free to this domain: the host's free pages, less the claims of other domains.
    let others_claims = host
        .outstanding_pages
        .saturating_sub(info.outstanding_pages);
    let available = host
        .free_pages
        .saturating_sub(others_claims)
        .saturating_add(info.tot_pages);
    if wanted_pages > available {
        return Err(no_room(format!(
            "the guest needs {wanted_pages} pages but the host can give domain {} at most \
             {available} ({} free, {others_claims} claimed by other domains)",
            req.domid, host.free_pages
        )));
    }
    Ok(())
}

/// The opening steps of every build: sizes, `xc_domain_getinfo` and the container check, the
/// memory bounds, `get_flags`, the safety checks (HVM containers), vCPUs and TSC.
pub(crate) fn prepare<'a>(
    env: BuildEnv<'a>,
    mode: BuildMode,
    req: &'a BuildRequest,
) -> Result<BuildCtx<'a>> {
    let started = Instant::now();
    let hv = Counting::new(env.hv);
    let store = Recording::new(env.store);
    let domid = req.domid;
    check_sizes(mode, req)?;
    log::info!(
        "domid = {domid}; {}: mem_max_mib {} mem_start_mib {}{}",
        mode.name(),
        req.mem_max_mib,
        req.mem_start_mib,
        match mode {
            BuildMode::Pvh => format!(" modules {}", req.modules.len()),
            BuildMode::Pv => " (mem_max_mib unused for PV)".into(),
            BuildMode::Hvm => String::new(),
        }
    );

    let info = hv.domain_getinfo(domid).map_err(Step::DomainGetinfo.xc())?;
    let container = mode != BuildMode::Pv;
    if info.hvm != container {
        let reason = match mode {
            BuildMode::Hvm => format!("domain {domid} is not an HVM container"),
            BuildMode::Pvh => format!("domain {domid} is not an HVM container: PVH needs one"),
            BuildMode::Pv => format!("domain {domid} is an HVM container, not PV"),
        };
        return Err(Step::BootXenInit.invalid(reason));
    }
    let host = hv.physinfo().map_err(mode.step().xc())?;
    check_fits(mode, req, &info, &host)?;

    let flags = platform::read_platform(&store, domid, container, req.vgpu)?;
    if container {
        super::container::safety_check(req, &flags, info.hap)?;
    }
    vcpu::configure_vcpus(&hv, domid, &flags)?;
    vcpu::configure_tsc(&hv, domid, flags.tsc_mode)?;
    Ok(BuildCtx {
        env,
        hv,
        store,
        req,
        domid,
        mode,
        started,
        flags,
        images: Cell::new(Duration::ZERO),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn info(max_pages: u64) -> DomainInfo {
        DomainInfo {
            hvm: false,
            hap: false,
            max_vcpu_id: 0,
            tot_pages: 0,
            max_pages,
            outstanding_pages: 0,
            shutdown_reason: None,
        }
    }

    fn host(free_pages: u64) -> PhysInfo {
        PhysInfo {
            nr_cpus: 2,
            nr_nodes: 1,
            free_pages,
            outstanding_pages: 0,
        }
    }

    #[test]
    fn a_pv_guest_larger_than_the_host_fails_before_any_allocation() {
        let req = BuildRequest::new(DomId(1), 0, 4_000_000, "/k");
        let e = check_fits(BuildMode::Pv, &req, &info(u64::MAX), &host(1 << 18)).unwrap_err();
        assert_eq!(e.code(), libc::ENOMEM);
        assert!(
            e.wire_line().starts_with(
                "xenguest: linux_build: [12] the guest needs 1024000000 pages but the host"
            ),
            "{e}"
        );
        let e = check_fits(BuildMode::Pv, &req, &info(1 << 18), &host(u64::MAX)).unwrap_err();
        assert!(e.wire_line().contains("at most 262144 (max_pages)"), "{e}");
    }

    #[test]
    fn pod_counts_the_target_and_other_domains_claims_count_against_us() {
        let mut req = BuildRequest::new(DomId(1), 4096, 1024, "/k");
        let ok = check_fits(BuildMode::Hvm, &req, &info(1 << 18), &host(1 << 18));
        assert!(ok.is_ok(), "a PoD guest needs only its target");
        req.mem_start_mib = 4096;
        assert!(check_fits(BuildMode::Hvm, &req, &info(1 << 20), &host(1 << 18)).is_err());
        let mut h = host(1 << 20);
        h.outstanding_pages = 1 << 20;
        let mut own = info(1 << 20);
        assert!(
            check_fits(BuildMode::Hvm, &req, &own, &h).is_err(),
            "claimed by others"
        );
        own.outstanding_pages = 1 << 20;
        assert!(
            check_fits(BuildMode::Hvm, &req, &own, &h).is_ok(),
            "our own claim"
        );
    }

    #[test]
    fn sizes() {
        let req = BuildRequest::new(DomId(1), 1024, 2048, "/k");
        assert!(check_sizes(BuildMode::Hvm, &req).is_err());
        assert!(
            check_sizes(BuildMode::Pv, &req).is_ok(),
            "PV ignores mem_max_mib"
        );
        let req = BuildRequest::new(DomId(1), crate::MAX_GUEST_MIB + 1, 1, "/k");
        assert!(check_sizes(BuildMode::Pvh, &req).is_err());
        let req = BuildRequest::new(DomId(1), 1, 0, "/k");
        assert!(check_sizes(BuildMode::Pv, &req).is_err());
    }

    proptest! {
        /// What passes the check never asks for more than max_pages or the host's free pages.
        #[test]
        fn a_request_that_passes_fits(
            start in 1u64..1 << 30, max in 1u64..1 << 30,
            max_pages in 0u64..1 << 40, free in 0u64..1 << 40, pv: bool,
        ) {
            let mode = if pv { BuildMode::Pv } else { BuildMode::Hvm };
            let req = BuildRequest::new(DomId(1), max, start, "/k");
            if check_fits(mode, &req, &info(max_pages), &host(free)).is_ok() {
                let pages = build_time_pages(mode, &req);
                prop_assert!(pages <= max_pages && pages <= free);
            }
        }
    }
}
