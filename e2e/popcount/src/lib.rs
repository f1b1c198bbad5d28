//! `libpopcount.so`: an `LD_PRELOAD` shim that counts populate calls the same way for both
//! builders in the e2e run (our `xenguest` and `xl`/libxenguest). It interposes libxenctrl's
//! `xc_domain_populate_physmap` and `xc_domain_populate_physmap_exact`, forwards each call to the
//! real function (`dlsym(RTLD_NEXT)`) and appends one line per call to `$XG_POPULATE_LOG`:
//! `popcount comm=<process> pid=<pid> fn=<function> domid=<d> order=<o> nr=<extents> rc=<rc>
//! us=<time in the call>`.
//! The plain call made inside `_exact` by libxenctrl itself is not logged twice.

use std::cell::Cell;
use std::ffi::CStr;
use std::io::Write;
use std::os::raw::{c_int, c_uint, c_ulong, c_void};

/// `xen_pfn_t` on x86-64.
type XenPfn = c_ulong;
type Populate =
    unsafe extern "C" fn(*mut c_void, u32, c_ulong, c_uint, c_uint, *mut XenPfn) -> c_int;

thread_local! {
    /// Inside an `_exact` call: its inner plain call is part of it.
    static IN_EXACT: Cell<bool> = const { Cell::new(false) };
}

fn next(name: &CStr) -> Option<Populate> {
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name; the result is either NULL or the
    // address of libxenctrl's function with exactly the `Populate` signature (xenctrl.h).
    unsafe {
        let p = libc::dlsym(libc::RTLD_NEXT, name.as_ptr());
        (!p.is_null()).then(|| std::mem::transmute::<*mut c_void, Populate>(p))
    }
}

fn record(function: &str, domid: u32, order: c_uint, nr: c_ulong, rc: c_int, us: u128) {
    let Some(path) = std::env::var_os("XG_POPULATE_LOG") else {
        return;
    };
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
    let line = format!(
        "popcount comm={} pid={} fn={function} domid={domid} order={order} nr={nr} rc={rc} us={us}\n",
        comm.trim(),
        std::process::id()
    );
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Set the calling thread's errno, as libxenctrl reports a failure.
fn set_errno(code: c_int) {
    // SAFETY: __errno_location returns the calling thread's errno slot, always valid to write.
    unsafe { *libc::__errno_location() = code };
}

/// Interposed `xc_domain_populate_physmap`.
///
/// # Safety
/// Same contract as libxenctrl's function: `extent_start` points to `nr_extents` writable
/// entries and `xch` is an open handle.
#[no_mangle]
pub unsafe extern "C" fn xc_domain_populate_physmap(
    xch: *mut c_void,
    domid: u32,
    nr_extents: c_ulong,
    extent_order: c_uint,
    mem_flags: c_uint,
    extent_start: *mut XenPfn,
) -> c_int {
    let Some(real) = next(c"xc_domain_populate_physmap") else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    let start = std::time::Instant::now();
    // SAFETY: forwarded unchanged under the caller's contract.
    let rc = unsafe {
        real(
            xch,
            domid,
            nr_extents,
            extent_order,
            mem_flags,
            extent_start,
        )
    };
    let us = start.elapsed().as_micros();
    if !IN_EXACT.with(Cell::get) {
        record(
            "xc_domain_populate_physmap",
            domid,
            extent_order,
            nr_extents,
            rc,
            us,
        );
    }
    rc
}

/// Interposed `xc_domain_populate_physmap_exact`.
///
/// # Safety
/// As for [`xc_domain_populate_physmap`].
#[no_mangle]
pub unsafe extern "C" fn xc_domain_populate_physmap_exact(
    xch: *mut c_void,
    domid: u32,
    nr_extents: c_ulong,
    extent_order: c_uint,
    mem_flags: c_uint,
    extent_start: *mut XenPfn,
) -> c_int {
    let Some(real) = next(c"xc_domain_populate_physmap_exact") else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    IN_EXACT.with(|c| c.set(true));
    let start = std::time::Instant::now();
    // SAFETY: forwarded unchanged under the caller's contract.
    let rc = unsafe {
        real(
            xch,
            domid,
            nr_extents,
            extent_order,
            mem_flags,
            extent_start,
        )
    };
    let us = start.elapsed().as_micros();
    IN_EXACT.with(|c| c.set(false));
    record(
        "xc_domain_populate_physmap_exact",
        domid,
        extent_order,
        nr_extents,
        rc,
        us,
    );
    rc
}
