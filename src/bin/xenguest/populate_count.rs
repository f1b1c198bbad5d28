//! Counting the populate calls a restore makes, whichever engine makes them: the binary
//! exports its own `xc_domain_populate_physmap` and `xc_domain_populate_physmap_exact`
//! (build.rs puts them in the dynamic symbol table), so libxenguest's calls during
//! `xc_domain_restore` and the native engine's land here; each counts and forwards to
//! libxenctrl's function (`dlsym(RTLD_NEXT)`), as the shadow-op wrappers do. The counts are
//! what the benchmarks compare: libxenguest's restore populates every pfn with its own 4 KiB
//! extent, one call per batch.

use std::collections::BTreeMap;
use std::os::raw::{c_char, c_int, c_uint, c_ulong, c_void};
use std::sync::Mutex;

/// What the populate calls of one extent order did.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrderCount {
    /// Calls.
    pub calls: u64,
    /// Pages populated.
    pub pages: u64,
    /// Time inside the calls, µs.
    pub us: u64,
}

/// Counts by extent order since the last [`take`].
static COUNTS: Mutex<BTreeMap<u32, OrderCount>> = Mutex::new(BTreeMap::new());

/// The counts so far, by extent order, and start again.
#[cfg_attr(not(feature = "xen"), allow(dead_code))]
pub fn take() -> BTreeMap<u32, OrderCount> {
    std::mem::take(&mut *COUNTS.lock().unwrap_or_else(|p| p.into_inner()))
}

thread_local! {
    /// Wrapped calls in progress on this thread: libxenctrl's `_exact` calls the plain one
    /// through the same wrappers, and only the outermost call is counted.
    static DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn count(order: c_uint, done: u64, took: std::time::Duration) {
    let mut counts = COUNTS.lock().unwrap_or_else(|p| p.into_inner());
    let entry = counts.entry(order).or_default();
    entry.calls += 1;
    entry.pages += done << order.min(63);
    entry.us += u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
}

fn next(name: &[u8]) -> *mut c_void {
    debug_assert_eq!(name.last(), Some(&0));
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name only looks the symbol up.
    unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast::<c_char>()) }
}

type Populate = unsafe extern "C" fn(*mut c_void, u32, c_ulong, c_uint, c_uint, *mut u64) -> c_int;

fn forward(
    name: &[u8],
    args: (*mut c_void, u32, c_ulong, c_uint, c_uint, *mut u64),
    done: impl Fn(c_int) -> u64,
) -> c_int {
    let p = next(name);
    if p.is_null() {
        // SAFETY: __errno_location returns this thread's errno slot.
        unsafe { *libc::__errno_location() = libc::ENOSYS };
        return -1;
    }
    // SAFETY: `p` is libxenctrl's function of this name, whose prototype `Populate` is.
    let real = unsafe { std::mem::transmute::<*mut c_void, Populate>(p) };
    let (xch, domid, nr, order, flags, extents) = args;
    let outermost = DEPTH.with(|d| {
        d.set(d.get() + 1);
        d.get() == 1
    });
    let t0 = std::time::Instant::now();
    // SAFETY: forwarded unchanged under the caller's contract.
    let rc = unsafe { real(xch, domid, nr, order, flags, extents) };
    DEPTH.with(|d| d.set(d.get() - 1));
    if outermost {
        count(order, done(rc), t0.elapsed());
    }
    rc
}

/// `xc_domain_populate_physmap`, counted: returns the extents done.
///
/// # Safety
/// libxenctrl's contract (xenctrl.h): `xch` is open; `extent_start` holds `nr_extents` frames.
#[no_mangle]
pub unsafe extern "C" fn xc_domain_populate_physmap(
    xch: *mut c_void,
    domid: u32,
    nr_extents: c_ulong,
    extent_order: c_uint,
    mem_flags: c_uint,
    extent_start: *mut u64,
) -> c_int {
    forward(
        b"xc_domain_populate_physmap\0",
        (
            xch,
            domid,
            nr_extents,
            extent_order,
            mem_flags,
            extent_start,
        ),
        |rc| u64::try_from(rc).unwrap_or(0),
    )
}

/// `xc_domain_populate_physmap_exact`, counted: 0 when all were done.
///
/// # Safety
/// As [`xc_domain_populate_physmap`].
#[no_mangle]
pub unsafe extern "C" fn xc_domain_populate_physmap_exact(
    xch: *mut c_void,
    domid: u32,
    nr_extents: c_ulong,
    extent_order: c_uint,
    mem_flags: c_uint,
    extent_start: *mut u64,
) -> c_int {
    forward(
        b"xc_domain_populate_physmap_exact\0",
        (
            xch,
            domid,
            nr_extents,
            extent_order,
            mem_flags,
            extent_start,
        ),
        |rc| if rc == 0 { nr_extents } else { 0 },
    )
}
