//! The first stream engine: libxenguest's own `xc_domain_save`, `xc_domain_restore` and
//! `xc_domain_resume` (Debian 12's `libxenguest.so.4.17`), with the callbacks written in Rust,
//! as the C xenguest calls them (`stub_xc_domain_save`, `stub_xc_domain_restore`,
//! `stub_xc_domain_resume_slow` in xenserver/xen.pg `patches/xenguest.patch` at 4f8cbaa4).
//! Full parity with C, PV included, because the stream code is the same library.
//!
//! Each operation opens its own `xc_interface`, whose logger forwards libxc's messages to `log`
//! and its progress reports (`xc_report_progress_step`) to the hooks; the error of a failed
//! call is read from that handle right after the call, on the same thread.
//!
//! Not done here: XenServer's libxenguest retries `XEN_DOMCTL_SHADOW_OP_*` on EBUSY (10 tries,
//! 10 ms apart); Debian's does not, so a log-dirty enable that races with another shadow op
//! fails the save instead of being retried.

use super::engine::{
    Engine, Operation, PrecopyDecision, PrecopyStats, RestoreHooks, RestoreRequest, RestoreResult,
    SaveHooks, SaveRequest,
};
use super::restore::{self, Prepared};
use crate::hypervisor::xenctrl::{self, XenCtrl};
use crate::hypervisor::XcError;
use crate::store::Store;
use crate::types::DomId;
use crate::{Error, Step};
use std::os::fd::AsRawFd;
use std::os::raw::{c_char, c_int, c_uint, c_ulong, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;
use xen_sys as sys;

/// The engine over libxenguest. It holds nothing: every operation opens the handles it needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Libxenguest;

/// A xentoollog logger that also carries the operation's progress sink. `base` comes first, so
/// the `*mut xentoollog_logger` libxc hands back is a pointer to the whole struct (the C idiom of
/// `xentoollog_logger_stdiostream`).
#[repr(C)]
struct ProgressLogger<'a> {
    base: sys::xentoollog_logger,
    progress: &'a (dyn Fn(u64, u64) + Sync),
}

unsafe extern "C" fn logger_progress(
    logger: *mut sys::xentoollog_logger,
    _context: *const c_char,
    _doing_what: *const c_char,
    _percent: c_int,
    done: c_ulong,
    total: c_ulong,
) {
    // SAFETY: libxc passes back the logger given to xc_interface_open, which is the `base` of a
    // live `ProgressLogger` (repr(C), first field) owned by the `Handle` using it.
    let logger = unsafe { &*logger.cast::<ProgressLogger<'_>>() };
    // A panic must not unwind into libxc; progress is advisory, so it is dropped.
    let _ = catch_unwind(AssertUnwindSafe(|| (logger.progress)(done, total)));
}

/// One `xc_interface` for one operation, closed on drop, and its logger (dropped after it).
struct Handle<'a> {
    xch: *mut sys::xc_interface,
    _logger: Box<ProgressLogger<'a>>,
}

impl<'a> Handle<'a> {
    /// `xc_interface_open`; without Xen (no `/dev/xen/privcmd`) this fails with ENOENT.
    fn open(progress: &'a (dyn Fn(u64, u64) + Sync)) -> Result<Self, Error> {
        let mut logger = Box::new(ProgressLogger {
            base: sys::xentoollog_logger {
                vmessage: Some(xenctrl::logger_vmessage),
                progress: Some(logger_progress),
                destroy: Some(xenctrl::logger_destroy),
            },
            progress,
        });
        let lg: *mut sys::xentoollog_logger = &mut logger.base;
        // SAFETY: `lg` points into the boxed logger, which lives as long as the handle (it is
        // dropped after xc_interface_close, see Drop), and its callbacks are valid functions.
        let xch = unsafe { sys::xc_interface_open(lg, lg, 0) };
        if xch.is_null() {
            let e = XcError::errno("xc_interface_open", xenctrl::errno());
            return Err(Step::InterfaceOpen.xc()(XcError {
                message: format!("Failed to open xc interface: {}", e.message),
                ..e
            }));
        }
        Ok(Handle {
            xch,
            _logger: logger,
        })
    }

    /// Run the libxenguest call `f`; a non-zero result is `op`'s error, from libxc's last error
    /// on this handle or errno (C's `failwith_oss_xc(op)`).
    fn run(
        &self,
        op: Operation,
        f: impl FnOnce(*mut sys::xc_interface) -> c_int,
    ) -> Result<(), Error> {
        // SAFETY: `xch` is open and used by this thread alone (the handle is not shared).
        unsafe { sys::xc_clear_last_error(self.xch) };
        if f(self.xch) == 0 {
            return Ok(());
        }
        let errno = xenctrl::errno();
        Err(Step::Mode(op.step()).xc()(xenctrl::last_error(
            self.xch,
            op.step(),
            errno,
        )))
    }
}

impl Drop for Handle<'_> {
    fn drop(&mut self) {
        // SAFETY: `xch` came from xc_interface_open and is closed exactly once, here, before
        // the logger it writes to is dropped (field order).
        unsafe { sys::xc_interface_close(self.xch) };
    }
}

/// Run a callback body, turning a panic into `failed` (a panic must not unwind into libxc).
fn guarded<T>(failed: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        log::error!("a migration callback panicked; failing the operation");
        failed
    })
}

/// What the save callbacks see through `data`.
struct SaveCtx<'a> {
    hooks: &'a dyn SaveHooks,
}

/// Recover the context libxc hands back as `data`.
///
/// # Safety
/// `data` must be the pointer to a `T` that outlives the libxenguest call making the callback.
unsafe fn ctx<'a, T>(data: *mut c_void) -> &'a T {
    // SAFETY: the caller's contract.
    unsafe { &*data.cast::<T>() }
}

unsafe extern "C" fn save_suspend(data: *mut c_void) -> c_int {
    // SAFETY: `data` is the `SaveCtx` of the running `save` (see there).
    let ctx = unsafe { ctx::<SaveCtx<'_>>(data) };
    // libxc: 1 once the domain is suspended, 0 to fail the save.
    guarded(0, || c_int::from(ctx.hooks.suspend()))
}

unsafe extern "C" fn save_precopy_policy(stats: sys::precopy_stats, data: *mut c_void) -> c_int {
    // SAFETY: as in `save_suspend`.
    let ctx = unsafe { ctx::<SaveCtx<'_>>(data) };
    let stats = PrecopyStats {
        iteration: stats.iteration,
        total_written_pages: stats.total_written,
        dirty_pages: stats.dirty_count,
    };
    guarded(PrecopyDecision::Abort.as_c(), || {
        ctx.hooks.precopy_policy(stats).as_c()
    })
}

unsafe extern "C" fn save_switch_qemu_logdirty(
    _domid: u32,
    enable: c_uint,
    data: *mut c_void,
) -> c_int {
    // SAFETY: as in `save_suspend`.
    let ctx = unsafe { ctx::<SaveCtx<'_>>(data) };
    // libxc: 0 on success.
    guarded(-1, || {
        if ctx.hooks.switch_qemu_logdirty(enable != 0) {
            0
        } else {
            -1
        }
    })
}

/// What the restore callbacks see through `data`.
struct RestoreCtx<'a> {
    hv: &'a XenCtrl,
    domid: DomId,
    prepared: &'a Prepared,
    /// The fallback's error, reported instead of libxc's generic one.
    failure: Mutex<Option<Error>>,
}

unsafe extern "C" fn restore_static_data_done(missing: c_uint, data: *mut c_void) -> c_int {
    // SAFETY: `data` is the `RestoreCtx` of the running `restore` (see there).
    let ctx = unsafe { ctx::<RestoreCtx<'_>>(data) };
    guarded(-1, || {
        if missing & sys::XGR_SDD_MISSING_CPUID == 0 {
            return 0;
        }
        match restore::cpuid_fallback(ctx.hv, ctx.domid, ctx.prepared) {
            Ok(()) => 0,
            Err(e) => {
                *ctx.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                -1
            }
        }
    })
}

impl Engine for Libxenguest {
    fn check(&self, _op: Operation) -> Result<(), Error> {
        let nothing = |_: u64, _: u64| {};
        Handle::open(&nothing).map(drop)
    }

    fn save(&self, req: &SaveRequest<'_>, hooks: &dyn SaveHooks) -> Result<(), Error> {
        let progress = |done, total| hooks.progress(done, total);
        let handle = Handle::open(&progress)?;
        let ctx = SaveCtx { hooks };
        let mut callbacks = sys::save_callbacks {
            suspend: Some(save_suspend),
            precopy_policy: Some(save_precopy_policy),
            switch_qemu_logdirty: Some(save_switch_qemu_logdirty),
            data: std::ptr::from_ref(&ctx).cast_mut().cast(),
            ..Default::default()
        };
        let fd = req.stream.as_raw_fd();
        handle.run(Operation::Save, |xch| {
            // SAFETY: `xch` is open; `callbacks` and the `ctx` its `data` points to outlive the
            // call; `fd` is borrowed for the call; a plain stream takes no recv_fd (-1).
            unsafe {
                sys::xc_domain_save(
                    xch,
                    fd,
                    req.domid.0,
                    req.flags,
                    &mut callbacks,
                    sys::XC_STREAM_PLAIN,
                    -1,
                )
            }
        })
    }

    fn restore(
        &self,
        req: &RestoreRequest<'_>,
        hooks: &dyn RestoreHooks,
    ) -> Result<RestoreResult, Error> {
        let (hv, store) = crate::builder::open_real_host()?;
        let prepared = restore::before_stream(&hv, &store, req.domid, req.vgpu)?;
        let progress = |done, total| hooks.progress(done, total);
        let handle = Handle::open(&progress)?;
        let ctx = RestoreCtx {
            hv: &hv,
            domid: req.domid,
            prepared: &prepared,
            failure: Mutex::new(None),
        };
        let mut callbacks = sys::restore_callbacks {
            static_data_done: Some(restore_static_data_done),
            data: std::ptr::from_ref(&ctx).cast_mut().cast(),
            ..Default::default()
        };
        let (mut store_frame, mut console_frame): (c_ulong, c_ulong) = (0, 0);
        let fd = req.stream.as_raw_fd();
        let done = handle.run(Operation::Restore, |xch| {
            // SAFETY: `xch` is open; the frame outputs, `callbacks` and the `ctx` its `data`
            // points to outlive the call; `fd` is borrowed for the call; a plain stream takes no
            // send_back_fd (-1).
            unsafe {
                sys::xc_domain_restore(
                    xch,
                    fd,
                    req.domid.0,
                    req.store_port,
                    &mut store_frame,
                    req.store_domid.0,
                    req.console_port,
                    &mut console_frame,
                    req.console_domid.0,
                    sys::XC_STREAM_PLAIN,
                    &mut callbacks,
                    -1,
                )
            }
        });
        if let Some(e) = ctx.failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        done?;
        restore::after_stream(&hv, &store as &dyn Store, req.domid, &prepared)?;
        Ok(RestoreResult {
            store_frame,
            console_frame,
            stats: None,
        })
    }

    fn resume(&self, domid: DomId) -> Result<(), Error> {
        let nothing = |_: u64, _: u64| {};
        let handle = Handle::open(&nothing)?;
        handle.run(Operation::Resume, |xch| {
            // SAFETY: `xch` is open; `fast` = 0 is the slow, uncooperative resume.
            unsafe { sys::xc_domain_resume(xch, domid.0, 0) }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without `/dev/xen/privcmd` the engine refuses up front with the C text, so the EMP
    /// server answers `error` instead of acknowledging a save that cannot run.
    #[test]
    fn without_xen_the_engine_refuses_before_any_work() {
        if std::path::Path::new("/dev/xen/privcmd").exists() {
            return;
        }
        let e = Libxenguest.check(Operation::Save).unwrap_err();
        assert!(
            e.wire_text()
                .starts_with("xenguest: xc_interface_open: [2] Failed to open xc interface"),
            "{}",
            e.wire_text()
        );
        assert_eq!(
            Libxenguest.resume(DomId(1)).unwrap_err().step(),
            "xc_interface_open"
        );
    }
}
