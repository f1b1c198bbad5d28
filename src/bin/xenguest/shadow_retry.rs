//! The shadow-op retry XenServer's libxenguest has and Debian's does not: a log-dirty shadow
//! operation that Xen refuses with EBUSY (another shadow op or a paging-pool resize in flight)
//! is retried up to 10 times, 10 ms apart, instead of failing the save.
//!
//! The binary exports its own `xc_shadow_control` and `xc_logdirty_control` (build.rs puts
//! them in the dynamic symbol table). The dynamic linker looks in the executable first, so
//! libxenguest's calls during `xc_domain_save` land here; each forwards to libxenctrl's function
//! (`dlsym(RTLD_NEXT)`) with the retry around it. The OCaml module does not migrate, so only the
//! binary needs this.

use std::os::raw::{c_char, c_int, c_longlong, c_uint, c_ulong, c_void};
use std::time::Duration;

/// Retries after the first EBUSY.
const RETRIES: u32 = 10;
/// The pause between tries.
const PAUSE: Duration = Duration::from_millis(10);

fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn set_errno(code: c_int) {
    // SAFETY: __errno_location returns the calling thread's errno slot, always valid to write.
    unsafe { *libc::__errno_location() = code };
}

/// Run `call` until it succeeds or fails with something other than EBUSY, at most
/// `1 + RETRIES` times; its last result (and errno) is the caller's.
fn retry_busy<T: Copy>(what: &str, failed: impl Fn(T) -> bool, mut call: impl FnMut() -> T) -> T {
    let mut rc = call();
    for attempt in 1..=RETRIES {
        if !failed(rc) || errno() != libc::EBUSY {
            return rc;
        }
        log::info!("{what}: EBUSY, retry {attempt} of {RETRIES} in {PAUSE:?}");
        std::thread::sleep(PAUSE);
        rc = call();
    }
    rc
}

/// libxenctrl's definition of `name` (the next one after this executable's).
fn next(name: &[u8]) -> *mut c_void {
    debug_assert_eq!(name.last(), Some(&0));
    static FIRST: std::sync::Once = std::sync::Once::new();
    FIRST.call_once(|| log::debug!("shadow ops go through the EBUSY retry"));
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name only looks the symbol up.
    unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast::<c_char>()) }
}

type ShadowControl = unsafe extern "C" fn(*mut c_void, u32, c_uint, *mut c_uint, c_uint) -> c_int;
type LogdirtyControl = unsafe extern "C" fn(
    *mut c_void,
    u32,
    c_uint,
    *mut c_void,
    c_ulong,
    c_uint,
    *mut c_void,
) -> c_longlong;

/// `xc_shadow_control` with the EBUSY retry.
///
/// # Safety
/// libxenctrl's contract (xenctrl.h): `xch` is an open handle; `mb` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xc_shadow_control(
    xch: *mut c_void,
    domid: u32,
    sop: c_uint,
    mb: *mut c_uint,
    mode: c_uint,
) -> c_int {
    let p = next(b"xc_shadow_control\0");
    if p.is_null() {
        set_errno(libc::ENOSYS);
        return -1;
    }
    // SAFETY: `p` is libxenctrl's xc_shadow_control, whose prototype ShadowControl is.
    let real = unsafe { std::mem::transmute::<*mut c_void, ShadowControl>(p) };
    retry_busy(
        "xc_shadow_control",
        |rc| rc < 0,
        // SAFETY: forwarded unchanged under the caller's contract.
        || unsafe { real(xch, domid, sop, mb, mode) },
    )
}

/// `xc_logdirty_control` with the EBUSY retry.
///
/// # Safety
/// libxenctrl's contract (xenctrl.h): `xch` is open; `dirty_bitmap` is NULL or a hypercall
/// buffer of at least `pages` bits; `stats` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xc_logdirty_control(
    xch: *mut c_void,
    domid: u32,
    sop: c_uint,
    dirty_bitmap: *mut c_void,
    pages: c_ulong,
    mode: c_uint,
    stats: *mut c_void,
) -> c_longlong {
    let p = next(b"xc_logdirty_control\0");
    if p.is_null() {
        set_errno(libc::ENOSYS);
        return -1;
    }
    // SAFETY: `p` is libxenctrl's xc_logdirty_control, whose prototype LogdirtyControl is.
    let real = unsafe { std::mem::transmute::<*mut c_void, LogdirtyControl>(p) };
    retry_busy(
        "xc_logdirty_control",
        |rc| rc < 0,
        // SAFETY: forwarded unchanged under the caller's contract.
        || unsafe { real(xch, domid, sop, dirty_bitmap, pages, mode, stats) },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A call that fails with `errnos` in turn, then succeeds; how often it ran.
    fn run(errnos: &[c_int]) -> (c_int, u32) {
        let calls = Cell::new(0u32);
        let rc = retry_busy(
            "test",
            |rc: c_int| rc < 0,
            || {
                let n = calls.get();
                calls.set(n + 1);
                match errnos.get(n as usize) {
                    Some(&e) => {
                        set_errno(e);
                        -1
                    }
                    None => 0,
                }
            },
        );
        (rc, calls.get())
    }

    #[test]
    fn ebusy_is_retried_and_other_failures_are_not() {
        assert_eq!(run(&[]), (0, 1));
        assert_eq!(run(&[libc::EBUSY, libc::EBUSY]), (0, 3));
        assert_eq!(run(&[libc::EINVAL]), (-1, 1));
        assert_eq!(run(&[libc::EBUSY, libc::EPERM]), (-1, 2));
        // Busy for good: the first try and ten retries, then the failure, errno kept.
        let (rc, calls) = run(&[libc::EBUSY; 20]);
        assert_eq!((rc, calls, errno()), (-1, 11, libc::EBUSY));
    }

    #[test]
    fn the_exports_reach_libxenctrl() {
        // The binary links libxenctrl (the `xen` feature); this test executable may not (the
        // linker drops what it does not use), so load it as the binary has it loaded.
        // SAFETY: dlopen of a system library with a NUL-terminated name.
        let lib = unsafe {
            libc::dlopen(
                c"libxenctrl.so.4.17".as_ptr(),
                libc::RTLD_NOW | libc::RTLD_GLOBAL,
            )
        };
        assert!(
            !lib.is_null(),
            "libxenctrl.so.4.17 is installed (libxen-dev)"
        );
        assert!(!next(b"xc_shadow_control\0").is_null());
        assert!(!next(b"xc_logdirty_control\0").is_null());
    }
}
