//! The stream-engine seam: what libxenguest's `xc_domain_save`, `xc_domain_restore` and
//! `xc_domain_resume` take and call back (xen-project/xen `tools/include/xenguest.h`,
//! `struct save_callbacks` and `struct restore_callbacks`, at RELEASE-4.17.3), so the FFI engine
//! over libxenguest and a native Rust stream can be swapped under the same server.
//!
//! Only `XC_STREAM_PLAIN` is used by XenServer: the Remus/COLO callbacks (`postcopy`,
//! `wait_checkpoint`, the restore `checkpoint` ones) are never called on a plain stream, so they
//! are not part of the seam. A save is ended early only through [`SaveHooks::precopy_policy`]
//! answering [`PrecopyDecision::Abort`] or [`SaveHooks::suspend`] answering `false`.

use crate::types::DomId;
use crate::Error;
use std::os::fd::BorrowedFd;

/// `XCFLAGS_LIVE`: a live save (precopy with log-dirty).
pub const XCFLAGS_LIVE: u32 = 1 << 0;
/// `XCFLAGS_DEBUG`: libxc's debug output and, in a live save, a VERIFY pass.
pub const XCFLAGS_DEBUG: u32 = 1 << 1;

/// `struct precopy_stats`: handed to the precopy policy after each pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrecopyStats {
    /// Passes done (`iteration`).
    pub iteration: u32,
    /// Pages written so far (`total_written`).
    pub total_written_pages: u64,
    /// Pages dirtied since the pass began; -1 when not known (`dirty_count`).
    pub dirty_pages: i64,
}

/// The policy's answer (`XGS_POLICY_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrecopyDecision {
    /// `XGS_POLICY_CONTINUE_PRECOPY` (0): another pass.
    Continue,
    /// `XGS_POLICY_STOP_AND_COPY` (1): suspend, then send what is left.
    StopAndCopy,
    /// `XGS_POLICY_ABORT` (-1): fail the save.
    Abort,
}

impl PrecopyDecision {
    /// The C value.
    pub fn as_c(self) -> i32 {
        match self {
            PrecopyDecision::Continue => 0,
            PrecopyDecision::StopAndCopy => 1,
            PrecopyDecision::Abort => -1,
        }
    }
}

/// What a save calls back (`struct save_callbacks` plus libxc's progress log).
pub trait SaveHooks: Send + Sync {
    /// After each precopy pass: go on, stop and copy, or abort.
    fn precopy_policy(&self, stats: PrecopyStats) -> PrecopyDecision;
    /// Suspend the domain (or wait until someone else has): `true` once it is suspended,
    /// `false` to fail the save.
    fn suspend(&self) -> bool;
    /// Progress inside a pass: `done_pages` of `total_pages` (xentoollog's progress callback).
    fn progress(&self, done_pages: u64, total_pages: u64);
    /// `switch_qemu_logdirty`: XenServer's qemu-upstream tracks its own dirty pages, so the C
    /// xenguest answers success without doing anything.
    fn switch_qemu_logdirty(&self, _enable: bool) -> bool {
        true
    }
}

/// What a restore calls back. The CPUID fallback of `static_data_done` needs the hypervisor,
/// so it belongs to the engine, not to these hooks.
pub trait RestoreHooks: Send + Sync {
    /// Progress: `done_pages` of `total_pages`.
    fn progress(&self, done_pages: u64, total_pages: u64);
}

/// A save (`xc_domain_save(xch, io_fd, dom, flags, &callbacks, XC_STREAM_PLAIN, -1)`).
#[derive(Debug, Clone, Copy)]
pub struct SaveRequest<'a> {
    /// The domain.
    pub domid: DomId,
    /// Where the stream goes.
    pub stream: BorrowedFd<'a>,
    /// `XCFLAGS_*`.
    pub flags: u32,
}

/// A restore (`xc_domain_restore(xch, io_fd, dom, store_evtchn, &store_mfn, store_domid,
/// console_evtchn, &console_mfn, console_domid, XC_STREAM_PLAIN, &callbacks, -1)`).
#[derive(Debug, Clone, Copy)]
pub struct RestoreRequest<'a> {
    /// The domain, created by the toolstack.
    pub domid: DomId,
    /// Where the stream comes from.
    pub stream: BorrowedFd<'a>,
    /// The xenstore event channel.
    pub store_port: u32,
    /// The domain serving xenstore.
    pub store_domid: DomId,
    /// The console event channel.
    pub console_port: u32,
    /// The domain serving the console.
    pub console_domid: DomId,
    /// HVM or PVH (not PV): chooses HPET, time offset and the CPUID fallback.
    pub hvm: bool,
    /// The guest has a vGPU (the `-vgpu` stimer default).
    pub vgpu: bool,
}

/// What a restore reports (`result:<store> <console>`), and what it did, when the engine says
/// (the native one does; libxenguest's logs it only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreResult {
    /// The xenstore ring's frame.
    pub store_frame: u64,
    /// The console ring's frame.
    pub console_frame: u64,
    /// The native engine's account: records, pages, populate calls by order, pages given back.
    pub stats: Option<crate::migrate::native::restore::RestoreStats>,
}

/// The operations, to ask an engine whether it can do one before a command is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `xc_domain_save`.
    Save,
    /// `xc_domain_restore`.
    Restore,
    /// `xc_domain_resume`.
    Resume,
}

impl Operation {
    /// The libxenguest call, which is also the step in error texts.
    pub fn step(self) -> &'static str {
        match self {
            Operation::Save => "xc_domain_save",
            Operation::Restore => "xc_domain_restore",
            Operation::Resume => "xc_domain_resume",
        }
    }
}

/// A stream engine. Errors are the build errors, with the libxenguest call as the step
/// (`xenguest: xc_domain_save: [errno] <text>`).
pub trait Engine: Send + Sync {
    /// Whether `op` can run at all here (the hypervisor is there, the engine is built);
    /// checked before a command is acknowledged, so a missing engine is an `error` reply,
    /// never an acknowledged save that then fails.
    fn check(&self, op: Operation) -> Result<(), Error>;
    /// Save the domain into `req.stream`.
    fn save(&self, req: &SaveRequest<'_>, hooks: &dyn SaveHooks) -> Result<(), Error>;
    /// Restore the domain from `req.stream`, including xenguest's side effects around
    /// `xc_domain_restore` (HPET, time offset, vCPUs, the CPUID fallback, generation id).
    fn restore(
        &self,
        req: &RestoreRequest<'_>,
        hooks: &dyn RestoreHooks,
    ) -> Result<RestoreResult, Error>;
    /// Resume a domain whose suspend was cancelled (`xc_domain_resume(xch, domid, fast=0)`).
    fn resume(&self, domid: DomId) -> Result<(), Error>;
}

/// The engine until a real one is built: every operation is a clear `not implemented` error
/// naming what is missing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unavailable;

impl Unavailable {
    fn missing(op: Operation) -> Error {
        Error::new(
            crate::Step::Mode(op.step()),
            crate::ErrorKind::NotImplemented(format!(
                "no migration stream engine is built: neither libxenguest's {} binding nor a \
                 native stream is available in this xenguest",
                op.step()
            )),
        )
    }
}

impl Engine for Unavailable {
    fn check(&self, op: Operation) -> Result<(), Error> {
        Err(Self::missing(op))
    }
    fn save(&self, _: &SaveRequest<'_>, _: &dyn SaveHooks) -> Result<(), Error> {
        Err(Self::missing(Operation::Save))
    }
    fn restore(
        &self,
        _: &RestoreRequest<'_>,
        _: &dyn RestoreHooks,
    ) -> Result<RestoreResult, Error> {
        Err(Self::missing(Operation::Restore))
    }
    fn resume(&self, _: DomId) -> Result<(), Error> {
        Err(Self::missing(Operation::Resume))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_names_what_is_missing() {
        let e = Unavailable.check(Operation::Save).unwrap_err();
        assert_eq!(
            e.wire_text(),
            "xenguest: xc_domain_save: [38] not implemented: no migration stream engine is \
             built: neither libxenguest's xc_domain_save binding nor a native stream is \
             available in this xenguest\n"
        );
        assert_eq!(
            Unavailable.resume(DomId(1)).unwrap_err().step(),
            "xc_domain_resume"
        );
        assert_eq!(
            [
                PrecopyDecision::Continue,
                PrecopyDecision::StopAndCopy,
                PrecopyDecision::Abort
            ]
            .map(PrecopyDecision::as_c),
            [0, 1, -1]
        );
    }
}
