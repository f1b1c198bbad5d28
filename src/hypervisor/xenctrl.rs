//! The real backend: each primitive is one libxenctrl (or libxenguest) call on a real Xen host.
//!
//! Bindings: `xenctrl-sys` for `xenctrl.h`, the project's `xen-sys` crate (bindgen at build time
//! from Debian's `libxen-dev` 4.17 headers) for what that crate lacks: the compat foreign-map API,
//! `xc_get_cpu_featureset`, `xc_dom_gnttab_seed` and libxencall, through which the two domctls
//! libxenctrl keeps private (`set_address_size`, `hypercall_init`, PV only) are issued.
//!
//! Handles: one [`XenCtrl`] owns one `xc_interface` (opened per build, closed on drop). libxc keeps
//! the last error in the handle, so every call runs under the handle's mutex and its error is read
//! before the lock is released: a `XenCtrl` can be shared between threads, and nothing is global.
//!
//! Errors: as the C xenguest's `failwith_oss_xc`, the xc error (code and message) when libxc
//! reported one for this call, else errno and its text, always with the failing function's name.

use super::{
    CpuidLeaf, CpuidPolicy, DomainInfo, FeaturesetKind, HvmBootVcpu, Hypervisor, MemFlags,
    MsrEntry, PciSbdf, PhysInfo, PodInfo, PvVcpuContext, ReservedRange, SchedCredit, TscInfo,
    XcError, XcResult,
};
use crate::types::{usize_of, DomId, E820Entry, MapAddr, MapFrame, Mfn, PAGE_BYTES, PAGE_USIZE};
use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_uint, c_ulong, c_void};
use std::sync::{Mutex, MutexGuard};
use xen_sys as sys;

/// Pages mapped at once when copying to or from guest memory (4 MiB).
const MAP_CHUNK_PAGES: u64 = 1024;

/// HVM save record type codes (`xen/include/public/arch-x86/hvm/save.h`).
use super::hvm_save::{self as save, descriptor};

/// `X86_CR0_PE | X86_CR0_ET`.
const CR0_PE_ET: u64 = 0x1 | 0x10;
/// `X86_DR6_DEFAULT`.
const DR6_DEFAULT: u64 = 0xffff_0ff0;
/// `X86_DR7_DEFAULT`.
const DR7_DEFAULT: u64 = 0x400;
/// `MTRR_TYPE_WRBACK | MTRR_DEF_TYPE_ENABLE`.
const MTRR_DEF_WB_ENABLED: u64 = 6 | (1 << 11);

extern "C" {
    /// glibc's `vsnprintf`, to format libxc's log messages (a `va_list` is a pointer to its
    /// one-element `__va_list_tag` array on x86-64).
    fn vsnprintf(
        buf: *mut c_char,
        size: usize,
        format: *const c_char,
        ap: *mut sys::__va_list_tag,
    ) -> c_int;
}

/// The xentoollog logger handed to libxc: messages go to the `log` crate at debug level
/// (libxc's own stderr logger would write to xenopsd's /dev/null, or into test output).
pub(crate) unsafe extern "C" fn logger_vmessage(
    _logger: *mut sys::xentoollog_logger,
    level: sys::xentoollog_level,
    _errnoval: c_int,
    context: *const c_char,
    format: *const c_char,
    ap: *mut sys::__va_list_tag,
) {
    if format.is_null() || !log::log_enabled!(log::Level::Debug) {
        return;
    }
    let mut buf = [0 as c_char; 1024];
    // SAFETY: `buf` is writable for its length; `format` and `ap` come from libxc's xtl_logv,
    // which passes a valid format string and its matching, not yet consumed va_list.
    unsafe { vsnprintf(buf.as_mut_ptr(), buf.len(), format, ap) };
    // SAFETY: vsnprintf always NUL-terminates within the buffer's length.
    let msg = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy();
    let context = if context.is_null() {
        "xc".into()
    } else {
        // SAFETY: a non-null context is a NUL-terminated string owned by libxc for the call.
        unsafe { CStr::from_ptr(context) }.to_string_lossy()
    };
    log::debug!("{context}: {level:?}: {}", msg.trim_end());
}

unsafe extern "C" fn logger_progress(
    _logger: *mut sys::xentoollog_logger,
    _context: *const c_char,
    _doing_what: *const c_char,
    _percent: c_int,
    _done: c_ulong,
    _total: c_ulong,
) {
}

pub(crate) unsafe extern "C" fn logger_destroy(_logger: *mut sys::xentoollog_logger) {}

/// A logger for libxc or libxencall that forwards to `log` (see [`logger_vmessage`]).
fn new_logger() -> Box<sys::xentoollog_logger> {
    Box::new(sys::xentoollog_logger {
        vmessage: Some(logger_vmessage),
        progress: Some(logger_progress),
        destroy: Some(logger_destroy),
    })
}

/// An open `xc_interface` and the logger it writes to (which must outlive it).
struct Handle {
    xch: *mut sys::xc_interface,
    _logger: Box<sys::xentoollog_logger>,
}

// SAFETY: the handle is only used under `XenCtrl::handle`'s mutex, so libxc sees one thread at
// a time; libxc keeps no thread-local state that ties a handle to the thread that opened it.
unsafe impl Send for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: `xch` came from xc_interface_open and is closed exactly once, here; the logger
        // is dropped only after this (field order), so libxc never logs through a freed logger.
        unsafe { sys::xc_interface_close(self.xch) };
    }
}

/// A libxenctrl handle: the real hypervisor behind the seam.
pub struct XenCtrl {
    handle: Mutex<Handle>,
}

impl std::fmt::Debug for XenCtrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("XenCtrl")
    }
}

/// The calling thread's errno.
pub(crate) fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

impl XenCtrl {
    /// `xc_interface_open` with a logger that forwards libxc's messages to `log` at debug level.
    /// Without Xen (no `/dev/xen/privcmd`) this fails with ENOENT.
    pub fn open() -> XcResult<Self> {
        let mut logger = new_logger();
        let lg: *mut sys::xentoollog_logger = &mut *logger;
        // SAFETY: `lg` points to a live logger whose callbacks are valid for the handle's whole
        // life (the Box is kept in the Handle and dropped after xc_interface_close).
        let xch = unsafe { sys::xc_interface_open(lg, lg, 0) };
        if xch.is_null() {
            return Err(XcError::errno("xc_interface_open", errno()));
        }
        Ok(XenCtrl {
            handle: Mutex::new(Handle {
                xch,
                _logger: logger,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Handle> {
        self.handle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run one libxc call `f` on the raw handle with the handle locked; a negative result is an
    /// error, described as `failwith_oss_xc` does (xc error if libxc set one, else errno).
    /// Public so a toolstack (the e2e tests) can make the calls around a build the same way.
    pub fn call(
        &self,
        function: &'static str,
        f: impl FnOnce(*mut sys::xc_interface) -> c_int,
    ) -> XcResult<c_int> {
        let h = self.lock();
        // SAFETY: `h.xch` is an open handle, used by this thread alone while `h` is held.
        unsafe { sys::xc_clear_last_error(h.xch) };
        let rc = f(h.xch);
        if rc >= 0 {
            return Ok(rc);
        }
        let errno = errno();
        Err(last_error(h.xch, function, errno))
    }

    /// As [`XenCtrl::call`] for calls that return a pointer (NULL on failure).
    fn call_ptr(
        &self,
        function: &'static str,
        f: impl FnOnce(*mut sys::xc_interface) -> *mut c_void,
    ) -> XcResult<*mut c_void> {
        let h = self.lock();
        // SAFETY: as in `call`.
        unsafe { sys::xc_clear_last_error(h.xch) };
        let p = f(h.xch);
        if !p.is_null() {
            return Ok(p);
        }
        let errno = errno();
        Err(last_error(h.xch, function, errno))
    }

    /// `xc_domain_getinfo` for exactly `domid` (it returns the next domain up when `domid`
    /// is gone, so the domid is checked).
    fn dominfo(&self, domid: DomId) -> XcResult<sys::xc_dominfo_t> {
        let mut info = sys::xc_dominfo_t::default();
        let n = self.call("xc_domain_getinfo", |xch| {
            // SAFETY: `info` is a writable array of the one entry asked for.
            unsafe { sys::xc_domain_getinfo(xch, domid.0, 1, &mut info) }
        })?;
        if n != 1 || info.domid != domid.0 {
            return Err(XcError::errno_with(
                "xc_domain_getinfo",
                libc::ESRCH,
                format!("domain {domid} does not exist"),
            ));
        }
        Ok(info)
    }

    /// Map `nr_pages` guest frames from `first` (read/write or read-only) and run `f` on them.
    fn with_mapping<T>(
        &self,
        domid: DomId,
        first: u64,
        nr_pages: u64,
        prot: c_int,
        f: impl FnOnce(*mut u8, usize) -> T,
    ) -> XcResult<T> {
        let bytes = usize_of(nr_pages * PAGE_BYTES);
        let size = c_int::try_from(bytes).map_err(|_| {
            XcError::errno_with("xc_map_foreign_range", libc::E2BIG, "mapping too large")
        })?;
        let p = self.call_ptr("xc_map_foreign_range", |xch| {
            // SAFETY: a plain libxc call on a locked, open handle; it returns NULL or a fresh
            // mapping of `size` bytes that we own and unmap below.
            unsafe { sys::xc_map_foreign_range(xch, domid.0, size, prot, first as c_ulong) }
        })?;
        let out = f(p.cast(), bytes);
        // SAFETY: `p` is the start of a `bytes`-long mapping made above and not used after this.
        unsafe { libc::munmap(p, bytes) };
        Ok(out)
    }

    /// The domain's HVM context (all save records), `xc_domain_hvm_getcontext` twice: size, data.
    fn hvm_getcontext(&self, domid: DomId) -> XcResult<Vec<u8>> {
        let size = self.call("xc_domain_hvm_getcontext", |xch| {
            // SAFETY: a NULL buffer with size 0 asks for the context's size only.
            unsafe { sys::xc_domain_hvm_getcontext(xch, domid.0, std::ptr::null_mut(), 0) }
        })?;
        if size <= 0 {
            return Err(XcError::errno_with(
                "xc_domain_hvm_getcontext",
                libc::EINVAL,
                format!("unable to fetch HVM context size (rc={size})"),
            ));
        }
        let mut buf = vec![0u8; count(size)];
        let len = self.call("xc_domain_hvm_getcontext", |xch| {
            // SAFETY: `buf` is writable for `size` bytes, the size passed.
            unsafe {
                sys::xc_domain_hvm_getcontext(xch, domid.0, buf.as_mut_ptr(), size.unsigned_abs())
            }
        })?;
        buf.truncate(count(len));
        Ok(buf)
    }

    fn hvm_setcontext(&self, domid: DomId, ctx: &mut [u8]) -> XcResult<()> {
        let len = u32::try_from(ctx.len()).map_err(|_| {
            XcError::errno_with(
                "xc_domain_hvm_setcontext",
                libc::E2BIG,
                "HVM context over 4 GiB",
            )
        })?;
        self.call("xc_domain_hvm_setcontext", |xch| {
            // SAFETY: `ctx` is a readable buffer of `len` bytes; Xen parses it as records.
            unsafe { sys::xc_domain_hvm_setcontext(xch, domid.0, ctx.as_mut_ptr(), len) }
        })
        .map(drop)
    }
}

extern "C" {
    /// `XEN_DOMCTL_getpageframeinfo3` over an open handle. libxenctrl exports it (its
    /// `xc_private.h` declares it, and libxenguest's save calls it) but no public header does.
    fn xc_get_pfn_type_batch(
        xch: *mut sys::xc_interface,
        dom: u32,
        num: c_uint,
        arr: *mut sys::xen_pfn_t,
    ) -> c_int;
}

/// One domctl libxenctrl does not export (`XEN_DOMCTL_set_address_size`, `_hypercall_init`),
/// issued as libxenguest's private `do_domctl` does: the struct in a hypercall-safe buffer
/// from libxencall, `__HYPERVISOR_domctl` with its address. A failing domctl sets errno.
fn raw_domctl(
    function: &'static str,
    domid: DomId,
    cmd: u32,
    fill: impl FnOnce(&mut sys::xen_domctl__bindgen_ty_1),
) -> XcResult<()> {
    raw_domctl_with(function, domid, cmd, &mut [], |u, _| fill(u)).map(drop)
}

/// [`raw_domctl`] with a side array the domctl points at (`getpageframeinfo3`'s pfns, a
/// shadow op's dirty bitmap): copied into hypercall-safe memory, its address handed to
/// `fill`, and copied back after the call. Returns the domctl as Xen left it.
fn raw_domctl_with(
    function: &'static str,
    domid: DomId,
    cmd: u32,
    side: &mut [u8],
    fill: impl FnOnce(&mut sys::xen_domctl__bindgen_ty_1, *mut c_void),
) -> XcResult<sys::xen_domctl> {
    let domain = sys::domid_t::try_from(domid.0)
        .map_err(|_| XcError::errno_with(function, libc::EINVAL, format!("domid {domid}")))?;
    let mut logger = new_logger();
    let lg: *mut sys::xentoollog_logger = &mut *logger;
    // SAFETY: `lg` stays valid until after xencall_close below (the Box lives to the end).
    let xcall = unsafe { sys::xencall_open(lg.cast(), 0) };
    if xcall.is_null() {
        return Err(XcError::errno_with(function, errno(), "xencall_open"));
    }
    let size = std::mem::size_of::<sys::xen_domctl>();
    // SAFETY: `xcall` is open; the buffers are released before the handle is closed.
    let buf = unsafe { sys::xencall_alloc_buffer(xcall, size) }.cast::<sys::xen_domctl>();
    let side_buf = if side.is_empty() {
        std::ptr::null_mut()
    } else {
        // SAFETY: as above; a zero-length side array needs no buffer.
        unsafe { sys::xencall_alloc_buffer(xcall, side.len()) }.cast::<u8>()
    };
    let result = if buf.is_null() || (!side.is_empty() && side_buf.is_null()) {
        Err(XcError::errno_with(
            function,
            errno(),
            "xencall_alloc_buffer",
        ))
    } else {
        let mut domctl = sys::xen_domctl {
            cmd,
            interface_version: sys::XEN_DOMCTL_INTERFACE_VERSION,
            domain,
            ..Default::default()
        };
        fill(&mut domctl.u, side_buf.cast());
        // SAFETY: `buf` is a fresh, writable, suitably aligned allocation of size_of::<xen_domctl>
        // bytes and `side_buf` one of `side.len()` bytes; the hypercall reads and writes back
        // exactly those, and both are read back before they are freed.
        let rc = unsafe {
            if !side.is_empty() {
                std::ptr::copy_nonoverlapping(side.as_ptr(), side_buf, side.len());
            }
            buf.write(domctl);
            sys::xencall1(xcall, sys::__HYPERVISOR_domctl, buf as u64)
        };
        let e = errno();
        // SAFETY: as above: both buffers are live and of these sizes.
        let after = unsafe {
            if !side.is_empty() {
                std::ptr::copy_nonoverlapping(side_buf, side.as_mut_ptr(), side.len());
            }
            buf.read()
        };
        if rc < 0 {
            Err(XcError::errno(function, e))
        } else {
            Ok(after)
        }
    };
    // SAFETY: whichever buffer was allocated came from xencall_alloc_buffer on this handle and
    // is freed once, here.
    unsafe {
        for b in [buf.cast::<c_void>(), side_buf.cast()] {
            if !b.is_null() {
                sys::xencall_free_buffer(xcall, b);
            }
        }
    }
    // SAFETY: `xcall` is open and closed exactly once; nothing allocated on it is still live.
    unsafe { sys::xencall_close(xcall) };
    drop(logger);
    result
}

/// A 64-bit PV vCPU context as libxenguest's `vcpu_x86_64` fills it.
fn pv_context(ctx: &PvVcpuContext) -> sys::vcpu_guest_context_x86_64 {
    let mut c = sys::vcpu_guest_context_x86_64 {
        flags: ctx.flags,
        kernel_ss: ctx.kernel_ss,
        kernel_sp: ctx.kernel_sp,
        vm_assist: ctx.vm_assist,
        ..Default::default()
    };
    let r = &mut c.user_regs;
    r.__bindgen_anon_16.rip = ctx.rip; // rip
    r.__bindgen_anon_18.rsp = ctx.rsp; // rsp
    r.__bindgen_anon_14.rsi = ctx.rsi; // rsi
    r.__bindgen_anon_17.rflags = ctx.rflags; // rflags
    r.cs = ctx.cs;
    r.ss = ctx.ss;
    r.ds = ctx.ds;
    r.es = ctx.es;
    r.fs = ctx.fs;
    r.gs = ctx.gs;
    c.ctrlreg[3] = ctx.cr3;
    c.debugreg[6] = ctx.dr6;
    c.debugreg[7] = ctx.dr7;
    c
}

/// A count returned by a libxc call that [`XenCtrl::call`] has already checked is not negative.
fn count(rc: c_int) -> usize {
    usize_of(u64::from(rc.unsigned_abs()))
}

/// The failure of `function` on `xch` right after the call: xc's error if it set one, else errno.
pub(crate) fn last_error(
    xch: *mut sys::xc_interface,
    function: &'static str,
    errno: i32,
) -> XcError {
    // SAFETY: `xch` is open and locked by the caller; xc_get_last_error returns a pointer into
    // the handle, valid until the next libxc call on it, and we copy out of it at once.
    let err = unsafe { &*sys::xc_get_last_error(xch) };
    let code = err.code as i32;
    if err.code == sys::xc_error_code::XC_ERROR_NONE {
        return XcError::errno(function, errno);
    }
    // SAFETY: libxc keeps `message` NUL-terminated (vsnprintf into a fixed array).
    let text = unsafe { CStr::from_ptr(err.message.as_ptr()) }
        .to_string_lossy()
        .trim_end()
        .to_string();
    let message = match (text.is_empty(), errno) {
        (true, 0) => "libxc error".to_string(),
        (true, e) => super::strerror(e),
        (false, _) => text,
    };
    XcError {
        function,
        code,
        message,
    }
}

/// A `T` as its bytes (plain C structs from the bindings: no padding that matters to Xen,
/// which reads exactly `size_of::<T>()` bytes of each record).
fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: `v` is a valid, initialised `T` (a bindgen C struct built from Default, so any
    // padding is zeroed), readable for size_of::<T>() bytes.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
        .to_vec()
}

/// The records of an HVM context up to END, or up to where it breaks off.
fn records(ctx: &[u8]) -> Vec<(u16, u16, &[u8])> {
    save::records(ctx).map_while(Result::ok).collect()
}

/// The boot CPU record `vcpu_hvm` writes: flat 32-bit protected mode at `entry`, `rbx` = start
/// info.
fn boot_cpu(vcpu: &HvmBootVcpu) -> sys::hvm_hw_cpu {
    let mut cpu = sys::hvm_hw_cpu {
        cs_limit: !0,
        ds_limit: !0,
        es_limit: !0,
        ss_limit: !0,
        tr_limit: 0x67,
        cs_arbytes: 0xc9b,
        ds_arbytes: 0xc93,
        es_arbytes: 0xc93,
        ss_arbytes: 0xc93,
        tr_arbytes: 0x8b,
        cr0: CR0_PE_ET,
        rip: vcpu.entry.into(),
        dr6: DR6_DEFAULT,
        dr7: DR7_DEFAULT,
        ..Default::default()
    };
    if vcpu.start_info_paddr != 0 {
        cpu.rbx = vcpu.start_info_paddr.into();
    }
    cpu
}

impl Hypervisor for XenCtrl {
    fn domain_getinfo(&self, domid: DomId) -> XcResult<DomainInfo> {
        let info = self.dominfo(domid)?;
        Ok(DomainInfo {
            hvm: info.hvm() != 0,
            hap: info.hap() != 0,
            max_vcpu_id: info.max_vcpu_id,
            tot_pages: info.nr_pages,
            max_pages: info.max_memkb >> 2,
            outstanding_pages: info.nr_outstanding_pages,
            shutdown_reason: (info.shutdown() != 0).then_some(info.shutdown_reason),
        })
    }

    fn physinfo(&self) -> XcResult<PhysInfo> {
        let mut info = sys::xc_physinfo_t::default();
        self.call("xc_physinfo", |xch| {
            // SAFETY: `info` is a writable xc_physinfo_t.
            unsafe { sys::xc_physinfo(xch, &mut info) }
        })?;
        Ok(PhysInfo {
            nr_cpus: info.nr_cpus,
            nr_nodes: info.nr_nodes,
            free_pages: info.free_pages,
            outstanding_pages: info.outstanding_pages,
        })
    }

    fn vcpu_setaffinity_hard(&self, domid: DomId, vcpu: u32, hard: &[bool]) -> XcResult<()> {
        let size = self
            .call("xc_get_cpumap_size", |xch| {
                // SAFETY: a plain query on an open handle.
                unsafe { sys::xc_get_cpumap_size(xch) }
            })
            .map(count)?;
        let mut map = vec![0u8; size];
        for (cpu, _) in hard.iter().enumerate().filter(|(_, on)| **on) {
            if let Some(byte) = map.get_mut(cpu / 8) {
                *byte |= 1 << (cpu % 8);
            }
        }
        let vcpu = c_int::try_from(vcpu).map_err(|_| {
            XcError::errno_with("xc_vcpu_setaffinity", libc::EINVAL, format!("vcpu {vcpu}"))
        })?;
        // libxc bounces both maps in and out; the soft one is ignored with FLAG_HARD.
        let mut soft = map.clone();
        self.call("xc_vcpu_setaffinity", |xch| {
            // SAFETY: both maps are writable buffers of xc_get_cpumap_size bytes, as libxc
            // expects for in/out cpumaps.
            unsafe {
                sys::xc_vcpu_setaffinity(
                    xch,
                    domid.0,
                    vcpu,
                    map.as_mut_ptr(),
                    soft.as_mut_ptr(),
                    sys::XEN_VCPUAFFINITY_HARD,
                )
            }
        })
        .map(drop)
    }

    fn sched_credit_domain_get(&self, domid: DomId) -> XcResult<SchedCredit> {
        let mut p = sys::xen_domctl_sched_credit::default();
        self.call("xc_sched_credit_domain_get", |xch| {
            // SAFETY: `p` is a writable xen_domctl_sched_credit.
            unsafe { sys::xc_sched_credit_domain_get(xch, domid.0, &mut p) }
        })?;
        Ok(SchedCredit {
            weight: p.weight,
            cap: p.cap,
        })
    }

    fn sched_credit_domain_set(&self, domid: DomId, params: SchedCredit) -> XcResult<()> {
        let mut p = sys::xen_domctl_sched_credit {
            weight: params.weight,
            cap: params.cap,
        };
        self.call("xc_sched_credit_domain_set", |xch| {
            // SAFETY: `p` is a valid xen_domctl_sched_credit, read by libxc.
            unsafe { sys::xc_sched_credit_domain_set(xch, domid.0, &mut p) }
        })
        .map(drop)
    }

    fn domain_set_tsc_info(&self, domid: DomId, tsc_mode: u32) -> XcResult<()> {
        self.call("xc_domain_set_tsc_info", |xch| {
            // SAFETY: scalar arguments only.
            unsafe { sys::xc_domain_set_tsc_info(xch, domid.0, tsc_mode, 0, 0, 0) }
        })
        .map(drop)
    }

    fn domain_claim_pages(&self, domid: DomId, nr_pages: u64) -> XcResult<()> {
        self.call("xc_domain_claim_pages", |xch| {
            // SAFETY: scalar arguments only.
            unsafe { sys::xc_domain_claim_pages(xch, domid.0, nr_pages as c_ulong) }
        })
        .map(drop)
    }

    fn domain_set_pod_target(&self, domid: DomId, target_pages: u64) -> XcResult<PodInfo> {
        let (mut tot, mut cache, mut entries) = (0u64, 0u64, 0u64);
        self.call("xc_domain_set_pod_target", |xch| {
            // SAFETY: the three out-pointers are writable u64s.
            unsafe {
                sys::xc_domain_set_pod_target(
                    xch,
                    domid.0,
                    target_pages,
                    &mut tot,
                    &mut cache,
                    &mut entries,
                )
            }
        })?;
        Ok(PodInfo {
            tot_pages: tot,
            pod_cache_pages: cache,
            pod_entries: entries,
        })
    }

    fn domain_populate_physmap(
        &self,
        domid: DomId,
        order: u32,
        flags: MemFlags,
        extents: &mut [u64],
    ) -> XcResult<usize> {
        if extents.is_empty() {
            return Ok(0);
        }
        let done = self.call("xc_domain_populate_physmap", |xch| {
            // SAFETY: `extents` is a writable array of `len` xen_pfn_t (u64) entries; Xen reads
            // each gfn and, for PV guests, writes the MFN back in place.
            unsafe {
                sys::xc_domain_populate_physmap(
                    xch,
                    domid.0,
                    extents.len() as c_ulong,
                    order,
                    flags.bits(),
                    extents.as_mut_ptr(),
                )
            }
        })?;
        Ok(count(done))
    }

    fn clear_domain_pages(&self, domid: DomId, first: MapFrame, nr_pages: u64) -> XcResult<()> {
        let nr = c_int::try_from(nr_pages).map_err(|_| {
            XcError::errno_with("xc_clear_domain_pages", libc::E2BIG, "too many pages")
        })?;
        self.call("xc_clear_domain_pages", |xch| {
            // SAFETY: scalar arguments only; libxc maps and clears the frames itself.
            unsafe { sys::xc_clear_domain_pages(xch, domid.0, first.number() as c_ulong, nr) }
        })
        .map(drop)
    }

    fn write_guest(&self, domid: DomId, at: MapAddr, data: &[u8]) -> XcResult<()> {
        copy_chunks(at.byte(), data.len(), |first, pages, skip, range| {
            self.with_mapping(
                domid,
                first,
                pages,
                libc::PROT_READ | libc::PROT_WRITE,
                |p, len| {
                    let src = &data[range.clone()];
                    debug_assert!(skip + src.len() <= len);
                    // SAFETY: the mapping is `len` bytes long and `skip + src.len() <= len` by
                    // construction of the chunk; guest memory never overlaps our buffer.
                    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), p.add(skip), src.len()) };
                },
            )
        })
    }

    fn read_guest(&self, domid: DomId, at: MapAddr, buf: &mut [u8]) -> XcResult<()> {
        copy_chunks(at.byte(), buf.len(), |first, pages, skip, range| {
            self.with_mapping(domid, first, pages, libc::PROT_READ, |p, len| {
                let dst = &mut buf[range.clone()];
                debug_assert!(skip + dst.len() <= len);
                // SAFETY: as in write_guest, with the roles swapped.
                unsafe { std::ptr::copy_nonoverlapping(p.add(skip), dst.as_mut_ptr(), dst.len()) };
            })
        })
    }

    fn hvm_param_set(&self, domid: DomId, param: u32, value: u64) -> XcResult<()> {
        self.call("xc_hvm_param_set", |xch| {
            // SAFETY: scalar arguments only.
            unsafe { sys::xc_hvm_param_set(xch, domid.0, param, value) }
        })
        .map(drop)
    }

    fn hvm_param_get(&self, domid: DomId, param: u32) -> XcResult<u64> {
        let mut value = 0u64;
        self.call("xc_hvm_param_get", |xch| {
            // SAFETY: `value` is a writable u64.
            unsafe { sys::xc_hvm_param_get(xch, domid.0, param, &mut value) }
        })?;
        Ok(value)
    }

    fn domain_set_memory_map(&self, domid: DomId, e820: &[E820Entry]) -> XcResult<()> {
        let mut map: Vec<sys::e820entry> = e820
            .iter()
            .map(|e| sys::e820entry {
                addr: e.addr,
                size: e.size,
                type_: e.kind.code(),
            })
            .collect();
        let len = u32::try_from(map.len()).map_err(|_| {
            XcError::errno_with("xc_domain_set_memory_map", libc::E2BIG, "e820 too long")
        })?;
        self.call("xc_domain_set_memory_map", |xch| {
            // SAFETY: `map` holds `len` valid e820 entries, read by libxc.
            unsafe { sys::xc_domain_set_memory_map(xch, domid.0, map.as_mut_ptr(), len) }
        })
        .map(drop)
    }

    fn domain_set_time_offset(&self, domid: DomId, offset_s: i32) -> XcResult<()> {
        self.call("xc_domain_set_time_offset", |xch| {
            // SAFETY: scalar arguments only.
            unsafe { sys::xc_domain_set_time_offset(xch, domid.0, offset_s) }
        })
        .map(drop)
    }

    fn get_cpu_featureset(&self, kind: FeaturesetKind) -> XcResult<Vec<u32>> {
        // SAFETY: a pure function of the library's build.
        let mut nr = unsafe { sys::xc_get_cpu_featureset_size() };
        let mut words = vec![0u32; usize_of(u64::from(nr))];
        let index = match kind {
            FeaturesetKind::Host => sys::XEN_SYSCTL_cpu_featureset_host,
            FeaturesetKind::PvMax => sys::XEN_SYSCTL_cpu_featureset_pv,
            FeaturesetKind::HvmMax => sys::XEN_SYSCTL_cpu_featureset_hvm,
        };
        self.call("xc_get_cpu_featureset", |xch| {
            // SAFETY: `words` is writable for `nr` u32s, the capacity passed in `nr`.
            unsafe { sys::xc_get_cpu_featureset(xch, index, &mut nr, words.as_mut_ptr()) }
        })?;
        words.truncate(usize_of(u64::from(nr)));
        Ok(words)
    }

    fn cpuid_apply_policy(&self, domid: DomId, policy: &CpuidPolicy) -> XcResult<()> {
        if policy.cores_per_socket != 0 {
            // XenServer's libxenguest takes cores-per-socket; upstream 4.17 has no such argument
            // and leaves the topology to Xen's defaults.
            log::info!(
                "domid = {domid}; cores-per-socket {} not supported by this libxenguest; topology left to Xen",
                policy.cores_per_socket
            );
        }
        let (features, nr) = if policy.featureset.is_empty() {
            (std::ptr::null(), 0)
        } else {
            let nr = c_uint::try_from(policy.featureset.len()).map_err(|_| {
                XcError::errno_with("xc_cpuid_apply_policy", libc::E2BIG, "featureset too long")
            })?;
            (policy.featureset.as_ptr(), nr)
        };
        self.call("xc_cpuid_apply_policy", |xch| {
            // SAFETY: `features` is NULL or points to `nr` u32s kept alive by `policy`; no xend
            // or MSR overrides (NULL), as the C xenguest passes.
            unsafe {
                sys::xc_cpuid_apply_policy(
                    xch,
                    domid.0,
                    policy.restore,
                    features,
                    nr,
                    true,
                    false,
                    policy.nested_virt,
                    std::ptr::null(),
                    std::ptr::null(),
                )
            }
        })
        .map(drop)
    }

    fn gnttab_seed(
        &self,
        domid: DomId,
        console: MapFrame,
        xenstore: MapFrame,
        console_domid: DomId,
        xenstore_domid: DomId,
    ) -> XcResult<()> {
        // libxenguest's `is_hvm` says how both frames are numbered.
        if console.is_machine() != xenstore.is_machine() {
            return Err(XcError::errno_with(
                "xc_dom_gnttab_seed",
                libc::EINVAL,
                format!("{console} and {xenstore} are numbered differently"),
            ));
        }
        let hvm = !console.is_machine();
        self.call("xc_dom_gnttab_seed", |xch| {
            // SAFETY: scalar arguments only; libxenguest maps the grant table frame itself.
            unsafe {
                sys::xc_dom_gnttab_seed(
                    xch,
                    domid.0,
                    hvm,
                    console.number() as sys::xen_pfn_t,
                    xenstore.number() as sys::xen_pfn_t,
                    console_domid.0,
                    xenstore_domid.0,
                )
            }
        })
        .map(drop)
    }

    fn domain_decrease_reservation(&self, domid: DomId, gfns: &[u64]) -> XcResult<usize> {
        if gfns.is_empty() {
            return Ok(0);
        }
        let mut extents = gfns.to_vec();
        let done = self.call("xc_domain_decrease_reservation", |xch| {
            // SAFETY: `extents` is an array of `len` xen_pfn_t (u64) gfns, read by Xen.
            unsafe {
                sys::xc_domain_decrease_reservation(
                    xch,
                    domid.0,
                    extents.len() as c_ulong,
                    0,
                    extents.as_mut_ptr(),
                )
            }
        })?;
        Ok(count(done))
    }

    fn domain_logdirty(&self, domid: DomId, enable: bool) -> XcResult<()> {
        let op = if enable {
            sys::XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY
        } else {
            sys::XEN_DOMCTL_SHADOW_OP_OFF
        };
        self.call("xc_shadow_control", |xch| {
            // SAFETY: scalar arguments; `mb` may be NULL for these ops.
            unsafe { sys::xc_shadow_control(xch, domid.0, op, std::ptr::null_mut(), 0) }
        })
        .map(drop)
    }

    fn domain_logdirty_clean(
        &self,
        domid: DomId,
        bitmap: &mut [u64],
        nr_pfns: u64,
    ) -> XcResult<u64> {
        if (bitmap.len() as u64).saturating_mul(64) < nr_pfns {
            return Err(XcError::errno_with(
                "xc_shadow_control",
                libc::EINVAL,
                format!("a bitmap of {} words for {nr_pfns} pfns", bitmap.len()),
            ));
        }
        // Xen writes the bitmap as unsigned longs, which on x86-64 are these u64 words.
        let after = raw_domctl_with(
            "xc_shadow_control",
            domid,
            sys::XEN_DOMCTL_shadow_op,
            zerocopy::IntoBytes::as_mut_bytes(bitmap),
            |u, side| {
                u.shadow_op.op = sys::XEN_DOMCTL_SHADOW_OP_CLEAN;
                u.shadow_op.dirty_bitmap.p = side.cast();
                u.shadow_op.pages = nr_pfns;
            },
        )?;
        // SAFETY: a shadow_op domctl: Xen filled the shadow_op member of the union.
        let stats = unsafe { after.u.shadow_op.stats };
        Ok(stats.dirty_count.into())
    }

    fn domain_pfn_types(&self, domid: DomId, pfns: &[u64]) -> XcResult<Vec<u32>> {
        const F: &str = "xc_get_pfn_type_batch";
        let num = c_uint::try_from(pfns.len())
            .ok()
            .filter(|&n| n <= 1024)
            .ok_or_else(|| XcError::errno_with(F, libc::E2BIG, format!("{} pfns", pfns.len())))?;
        let mut arr = pfns.to_vec();
        self.call(F, |xch| {
            // SAFETY: `arr` holds `num` xen_pfn_t, read and overwritten in place by the domctl.
            unsafe { xc_get_pfn_type_batch(xch, domid.0, num, arr.as_mut_ptr()) }
        })?;
        // Xen overwrites each entry with its type alone, XEN_DOMCTL_PFINFO_* in bits 28-31
        // (xen-project/xen `xen/arch/x86/domctl.c`, XEN_DOMCTL_getpageframeinfo3).
        Ok(arr
            .iter()
            .map(|&t| u32::try_from(t & u64::from(super::pfinfo::LTAB_MASK)).unwrap_or(u32::MAX))
            .collect())
    }

    fn domain_maximum_gpfn(&self, domid: DomId) -> XcResult<u64> {
        let mut gpfn: sys::xen_pfn_t = 0;
        self.call("xc_domain_maximum_gpfn", |xch| {
            // SAFETY: `gpfn` is a writable xen_pfn_t.
            unsafe { sys::xc_domain_maximum_gpfn(xch, domid.0, &mut gpfn) }
        })?;
        Ok(gpfn)
    }

    fn xen_version(&self) -> XcResult<(u32, u32)> {
        let v = self.call("xc_version", |xch| {
            // SAFETY: XENVER_version takes no argument buffer.
            unsafe { sys::xc_version(xch, sys::XENVER_version.cast_signed(), std::ptr::null_mut()) }
        })?;
        let v = u32::try_from(v).unwrap_or(0);
        Ok((v >> 16, v & 0xffff))
    }

    fn domain_get_cpu_policy(&self, domid: DomId) -> XcResult<(Vec<CpuidLeaf>, Vec<MsrEntry>)> {
        let (mut nr_leaves, mut nr_msrs) = (0u32, 0u32);
        self.call("xc_cpu_policy_get_size", |xch| {
            // SAFETY: two writable counters.
            unsafe { sys::xc_cpu_policy_get_size(xch, &mut nr_leaves, &mut nr_msrs) }
        })?;
        let mut leaves = vec![sys::xen_cpuid_leaf_t::default(); usize_of(nr_leaves.into())];
        let mut msrs = vec![sys::xen_msr_entry_t::default(); usize_of(nr_msrs.into())];
        // SAFETY: allocates an empty policy object (NULL on failure, checked).
        let policy = unsafe { sys::xc_cpu_policy_init() };
        if policy.is_null() {
            return Err(XcError::errno("xc_cpu_policy_init", libc::ENOMEM));
        }
        let got = self
            .call("xc_cpu_policy_get_domain", |xch| {
                // SAFETY: `policy` is a live policy object.
                unsafe { sys::xc_cpu_policy_get_domain(xch, domid.0, policy) }
            })
            .and_then(|_| {
                self.call("xc_cpu_policy_serialise", |xch| {
                    // SAFETY: the arrays hold the counts passed, which libxc lowers to what it
                    // wrote.
                    unsafe {
                        sys::xc_cpu_policy_serialise(
                            xch,
                            policy,
                            leaves.as_mut_ptr(),
                            &mut nr_leaves,
                            msrs.as_mut_ptr(),
                            &mut nr_msrs,
                        )
                    }
                })
            });
        // SAFETY: `policy` came from xc_cpu_policy_init and is destroyed once.
        unsafe { sys::xc_cpu_policy_destroy(policy) };
        got?;
        leaves.truncate(usize_of(nr_leaves.into()));
        msrs.truncate(usize_of(nr_msrs.into()));
        Ok((
            leaves
                .iter()
                .map(|l| CpuidLeaf {
                    leaf: l.leaf,
                    subleaf: l.subleaf,
                    regs: [l.a, l.b, l.c, l.d],
                })
                .collect(),
            msrs.iter()
                .map(|m| MsrEntry {
                    index: m.idx,
                    flags: m.flags,
                    value: m.val,
                })
                .collect(),
        ))
    }

    fn domain_set_cpu_policy(
        &self,
        domid: DomId,
        leaves: &[CpuidLeaf],
        msrs: &[MsrEntry],
    ) -> XcResult<()> {
        let mut c_leaves: Vec<sys::xen_cpuid_leaf_t> = leaves
            .iter()
            .map(|l| sys::xen_cpuid_leaf_t {
                leaf: l.leaf,
                subleaf: l.subleaf,
                a: l.regs[0],
                b: l.regs[1],
                c: l.regs[2],
                d: l.regs[3],
            })
            .collect();
        let mut c_msrs: Vec<sys::xen_msr_entry_t> = msrs
            .iter()
            .map(|m| sys::xen_msr_entry_t {
                idx: m.index,
                flags: m.flags,
                val: m.value,
            })
            .collect();
        let too_many = |n: usize| {
            u32::try_from(n).map_err(|_| XcError::errno("xc_set_domain_cpu_policy", libc::E2BIG))
        };
        let (nr_leaves, nr_msrs) = (too_many(c_leaves.len())?, too_many(c_msrs.len())?);
        let (mut err_leaf, mut err_subleaf, mut err_msr) = (u32::MAX, u32::MAX, u32::MAX);
        self.call("xc_set_domain_cpu_policy", |xch| {
            // SAFETY: the arrays hold the counts passed and are only read; the three error
            // outputs are writable.
            unsafe {
                sys::xc_set_domain_cpu_policy(
                    xch,
                    domid.0,
                    nr_leaves,
                    c_leaves.as_mut_ptr(),
                    nr_msrs,
                    c_msrs.as_mut_ptr(),
                    &mut err_leaf,
                    &mut err_subleaf,
                    &mut err_msr,
                )
            }
        })
        .map(drop)
        .map_err(|e| XcError {
            message: format!(
                "{} (leaf {err_leaf:#x}, subleaf {err_subleaf:#x}, msr {err_msr:#x})",
                e.message
            ),
            ..e
        })
    }

    fn domain_get_tsc_info(&self, domid: DomId) -> XcResult<TscInfo> {
        let mut t = TscInfo::default();
        self.call("xc_domain_get_tsc_info", |xch| {
            // SAFETY: the four out-pointers are writable fields of `t`.
            unsafe {
                sys::xc_domain_get_tsc_info(
                    xch,
                    domid.0,
                    &mut t.mode,
                    &mut t.nsec,
                    &mut t.khz,
                    &mut t.incarnation,
                )
            }
        })?;
        Ok(t)
    }

    fn domain_restore_tsc_info(&self, domid: DomId, info: &TscInfo) -> XcResult<()> {
        self.call("xc_domain_set_tsc_info", |xch| {
            // SAFETY: scalar arguments only.
            unsafe {
                sys::xc_domain_set_tsc_info(
                    xch,
                    domid.0,
                    info.mode,
                    info.nsec,
                    info.khz,
                    info.incarnation,
                )
            }
        })
        .map(drop)
    }

    fn domain_hvm_getcontext(&self, domid: DomId) -> XcResult<Vec<u8>> {
        self.hvm_getcontext(domid)
    }

    fn domain_hvm_setcontext(&self, domid: DomId, context: &[u8]) -> XcResult<()> {
        // libxenctrl takes a mutable pointer it only reads from.
        self.hvm_setcontext(domid, &mut context.to_vec())
    }

    fn domain_hvm_set_boot_vcpu(&self, domid: DomId, vcpu: &HvmBootVcpu) -> XcResult<()> {
        let full = self.hvm_getcontext(domid)?;
        let recs = records(&full);
        let Some(&(_, _, header)) = recs.iter().find(|(t, _, _)| *t == save::HEADER) else {
            return Err(XcError::errno_with(
                "xc_domain_hvm_getcontext",
                libc::EINVAL,
                "no header record in the HVM context",
            ));
        };
        let header_rec = [&descriptor(save::HEADER, 0, header.len())[..], header].concat();
        let end = descriptor(save::END, 0, 0);

        if vcpu.mtrr_write_back {
            let Some(&(_, _, mtrr)) = recs.iter().find(|(t, i, _)| *t == save::MTRR && *i == 0)
            else {
                return Err(XcError::errno_with(
                    "xc_domain_hvm_getcontext",
                    libc::EINVAL,
                    "no MTRR record for vCPU 0 in the HVM context",
                ));
            };
            let mut m = sys::hvm_hw_mtrr::default();
            let n = mtrr.len().min(std::mem::size_of::<sys::hvm_hw_mtrr>());
            // SAFETY: `m` is a plain C struct, writable for size_of bytes; `n` is no more than
            // that nor than the record's length.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    mtrr.as_ptr(),
                    (&mut m as *mut sys::hvm_hw_mtrr).cast::<u8>(),
                    n,
                )
            };
            m.msr_mtrr_def_type = MTRR_DEF_WB_ENABLED;
            let body = bytes_of(&m);
            let max_vcpu_id = self.domain_getinfo(domid)?.max_vcpu_id;
            let last = u16::try_from(max_vcpu_id).map_err(|_| {
                XcError::errno_with(
                    "xc_domain_hvm_setcontext",
                    libc::EINVAL,
                    "vcpu id over 16 bits",
                )
            })?;
            for i in 0..=last {
                let mut ctx = [
                    &header_rec[..],
                    &descriptor(save::MTRR, i, body.len()),
                    &body,
                    &end,
                ]
                .concat();
                self.hvm_setcontext(domid, &mut ctx)?;
            }
        }

        let cpu = bytes_of(&boot_cpu(vcpu));
        let mut ctx = [
            &header_rec[..],
            &descriptor(save::CPU, 0, cpu.len()),
            &cpu,
            &end,
        ]
        .concat();
        self.hvm_setcontext(domid, &mut ctx)
    }

    fn reserved_device_memory_map(&self, sbdf: PciSbdf) -> XcResult<Vec<ReservedRange>> {
        let function = "xc_reserved_device_memory_map";
        let mut nr: u32 = 0;
        let first = self.call(function, |xch| {
            // SAFETY: a NULL array with capacity 0 asks for the number of entries.
            unsafe {
                sys::xc_reserved_device_memory_map(
                    xch,
                    0,
                    sbdf.seg,
                    sbdf.bus,
                    sbdf.devfn(),
                    std::ptr::null_mut(),
                    &mut nr,
                )
            }
        });
        match first {
            Ok(_) => return Ok(Vec::new()),
            Err(e) if e.code == libc::ENOBUFS => {}
            Err(e) => return Err(e),
        }
        let mut entries = vec![sys::xen_reserved_device_memory::default(); usize_of(u64::from(nr))];
        self.call(function, |xch| {
            // SAFETY: `entries` is writable for `nr` entries, the capacity passed.
            unsafe {
                sys::xc_reserved_device_memory_map(
                    xch,
                    0,
                    sbdf.seg,
                    sbdf.bus,
                    sbdf.devfn(),
                    entries.as_mut_ptr(),
                    &mut nr,
                )
            }
        })?;
        entries.truncate(usize_of(u64::from(nr)));
        Ok(entries
            .iter()
            .map(|e| ReservedRange {
                start_pfn: e.start_pfn,
                nr_pages: e.nr_pages,
            })
            .collect())
    }
    fn domain_set_address_size(&self, domid: DomId, bits: u32) -> XcResult<()> {
        raw_domctl(
            "XEN_DOMCTL_set_address_size",
            domid,
            sys::XEN_DOMCTL_set_address_size,
            |u| u.address_size.size = bits,
        )
    }

    fn get_native_protocol(&self, domid: DomId) -> XcResult<String> {
        let p = self.call_ptr("xc_domain_get_native_protocol", |xch| {
            // SAFETY: a plain query; the result is NULL or a static string.
            unsafe { sys::xc_domain_get_native_protocol(xch, domid.0) }
                .cast_mut()
                .cast()
        })?;
        // SAFETY: non-NULL results point to libxc's static NUL-terminated protocol names.
        Ok(unsafe { CStr::from_ptr(p.cast()) }
            .to_string_lossy()
            .into_owned())
    }

    fn domain_shared_info_frame(&self, domid: DomId) -> XcResult<Mfn> {
        Ok(Mfn(self.dominfo(domid)?.shared_info_frame))
    }

    fn mmuext_pin_l4_table(&self, domid: DomId, l4: Mfn) -> XcResult<()> {
        let mut op = sys::mmuext_op {
            cmd: sys::MMUEXT_PIN_L4_TABLE,
            ..Default::default()
        };
        op.arg1.mfn = l4.0;
        self.call("xc_mmuext_op", |xch| {
            // SAFETY: `op` is one valid mmuext_op, the count passed; libxc bounces it.
            unsafe { sys::xc_mmuext_op(xch, &mut op, 1, domid.0) }
        })
        .map(drop)
    }

    fn hypercall_page_init(&self, domid: DomId, page: Mfn) -> XcResult<()> {
        raw_domctl(
            "XEN_DOMCTL_hypercall_init",
            domid,
            sys::XEN_DOMCTL_hypercall_init,
            |u| u.hypercall_init.gmfn = page.0,
        )
    }

    fn vcpu_setcontext_pv(&self, domid: DomId, vcpu: u32, ctx: &PvVcpuContext) -> XcResult<()> {
        let mut any = sys::vcpu_guest_context_any_t {
            x64: pv_context(ctx),
        };
        self.call("xc_vcpu_setcontext", |xch| {
            // SAFETY: `any` is a fully initialised context union; libxc bounces its bytes in.
            unsafe { sys::xc_vcpu_setcontext(xch, domid.0, vcpu, &mut any) }
        })
        .map(drop)
    }
}

/// Split a copy of `len` bytes from byte `start` of the domain's foreign-map numbering
/// ([`MapAddr::byte`]) into mappings of at most `MAP_CHUNK_PAGES` pages:
/// `f(first_frame, pages, offset_in_mapping, byte_range_of_buffer)`.
fn copy_chunks(
    start: u64,
    len: usize,
    mut f: impl FnMut(u64, u64, usize, std::ops::Range<usize>) -> XcResult<()>,
) -> XcResult<()> {
    let mut done = 0usize;
    while done < len {
        let addr = start + done as u64;
        let first = addr / PAGE_BYTES;
        let skip = usize_of(addr % PAGE_BYTES);
        let room = usize_of(MAP_CHUNK_PAGES * PAGE_BYTES) - skip;
        let n = room.min(len - done);
        let pages = (skip + n).div_ceil(PAGE_USIZE) as u64;
        f(first, pages, skip, done..done + n)?;
        done += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_range_once_and_respect_page_offsets() {
        let mut seen = Vec::new();
        let len = usize_of(MAP_CHUNK_PAGES * PAGE_BYTES) + 100;
        copy_chunks(0x1000 + 0x10, len, |first, pages, skip, range| {
            seen.push((first, pages, skip, range));
            Ok(())
        })
        .unwrap();
        let chunk = usize_of(MAP_CHUNK_PAGES * PAGE_BYTES);
        assert_eq!(
            seen,
            vec![
                (1, MAP_CHUNK_PAGES, 0x10, 0..chunk - 0x10),
                (1 + MAP_CHUNK_PAGES, 1, 0, chunk - 0x10..len),
            ]
        );
        let mut none = 0;
        copy_chunks(5, 0, |_, _, _, _| {
            none += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(none, 0);
    }

    #[test]
    fn hvm_context_records_parse_and_stop_at_end() {
        let ctx = [
            &descriptor(save::HEADER, 0, 4)[..],
            &[1, 2, 3, 4],
            &descriptor(save::CPU, 1, 2),
            &[9, 9],
            &descriptor(save::END, 0, 0),
            &descriptor(save::MTRR, 0, 0),
        ]
        .concat();
        let recs = records(&ctx);
        assert_eq!(
            recs,
            vec![
                (save::HEADER, 0, &[1u8, 2, 3, 4][..]),
                (save::CPU, 1, &[9u8, 9][..]),
                (save::END, 0, &[][..]),
            ]
        );
        // A truncated record is dropped, not read past the end.
        assert_eq!(records(&descriptor(save::CPU, 0, 100)), vec![]);
    }

    #[test]
    fn boot_cpu_is_flat_protected_mode() {
        let cpu = boot_cpu(&HvmBootVcpu {
            entry: 0x100000,
            start_info_paddr: 0x12_3000,
            mtrr_write_back: false,
        });
        assert_eq!(cpu.rip, 0x100000);
        assert_eq!(cpu.rbx, 0x12_3000);
        assert_eq!(cpu.cr0, 0x11);
        assert_eq!(cpu.cs_limit, u32::MAX);
        assert_eq!(cpu.cs_arbytes, 0xc9b);
        assert_eq!(cpu.tr_arbytes, 0x8b);
        assert_eq!(cpu.cs_base, 0);
        // hvm_hw_cpu's size is part of the save ABI (HVM_SAVE_LENGTH(CPU) in 4.17).
        assert_eq!(std::mem::size_of::<sys::hvm_hw_cpu>(), 1032);
    }

    #[test]
    fn pv_context_fields_sit_at_their_abi_offsets() {
        let ctx = PvVcpuContext {
            flags: 0x14,
            rip: 0x1111,
            rsp: 0x2222,
            rsi: 0x3333,
            rflags: 0x200,
            cs: 0xe033,
            ss: 0xe02b,
            kernel_sp: 0x4444,
            cr3: 0x5000,
            ..Default::default()
        };
        let bytes = bytes_of(&pv_context(&ctx));
        let u64_at = |off: usize| u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap());
        let u16_at = |off: usize| u16::from_le_bytes(bytes[off..off + 2].try_into().unwrap());
        // public/arch-x86/xen-x86_64.h: 512 bytes of FPU state, flags, then cpu_user_regs
        // (15 GPRs from r15 down to rdi, error_code, entry_vector, rip, cs, ..., rflags, rsp).
        let regs = 520;
        assert_eq!(u64_at(512), 0x14);
        assert_eq!(u64_at(regs + 13 * 8), 0x3333, "rsi");
        assert_eq!(u64_at(regs + 128), 0x1111, "rip");
        assert_eq!(u16_at(regs + 136), 0xe033, "cs");
        assert_eq!(u64_at(regs + 144), 0x200, "rflags");
        assert_eq!(u64_at(regs + 152), 0x2222, "rsp");
        assert_eq!(u16_at(regs + 160), 0xe02b, "ss");
        assert_eq!(std::mem::size_of::<sys::vcpu_guest_context_x86_64>(), 5168);
    }

    #[test]
    fn without_xen_open_fails_with_the_errno() {
        if std::path::Path::new("/dev/xen/privcmd").exists() {
            return;
        }
        let err = XenCtrl::open().unwrap_err();
        assert_eq!(err.function, "xc_interface_open");
        assert_eq!(err.code, libc::ENOENT, "{err}");
    }
}
