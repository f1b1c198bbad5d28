//! Migration: the EMP server that emu-manager drives (`xenguest -mode listen`) over a seam for
//! the stream engine that writes and reads libxenguest's migration stream.
//!
//! The C xenguest's listen mode is `tools/xenguest/xg_emu.c` in xenserver/xen.pg
//! `patches/xenguest.patch` (at 4f8cbaa4); the client side is xenserver/emu-manager `emum.c`,
//! `em-client.c` and `lib.c` (at c3a0bfb). The pieces:
//!
//! * [`emp`]: the wire format (JSON objects back to back) and the typed commands;
//! * [`socket`]: a client's socket, messages written whole, the stream fd by SCM_RIGHTS;
//! * [`direct`]: the direct modes (`save`, `restore`, `resume_slow`) over an engine;
//! * [`engine`]: what `xc_domain_save`/`xc_domain_restore`/`xc_domain_resume` need and call
//!   back, so the stream engine can be swapped;
//! * [`session`]: the callbacks' shared state (precopy policy, suspend wait, abort, progress);
//! * [`libxenguest`]: the engine over libxenguest's own save, restore and resume;
//! * [`native`]: our own engine for HVM and PVH, over the hypervisor seam;
//! * [`select`]: which engine runs an operation (by domain kind and `XENGUEST_STREAM_ENGINE`);
//! * [`restore`]: xenguest's steps around a restore that the stream does not carry;
//! * [`server`]: the listen-mode server (socket, command loop, worker thread, idle timeout).
//!
//! Errors use the build errors' form, `xenguest: <step>: [errno] <text>` ([`crate::Error`]).

pub mod direct;
pub mod emp;
pub mod engine;
#[cfg(feature = "xen")]
pub mod libxenguest;
pub mod native;
pub mod restore;
pub mod select;
pub mod server;
pub mod session;
pub mod socket;
pub mod stream;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use crate::hypervisor::XcError;
use crate::Error;
use std::io;

/// An I/O failure at `step` in the one error form: `xenguest: <step>: [errno] <text>: <what>`.
/// A peer that has closed its end (`EPIPE`) is named as such.
pub fn io_error(step: &'static str, e: &io::Error, what: impl std::fmt::Display) -> Error {
    let (code, context) = match e.raw_os_error() {
        Some(libc::EPIPE) => (libc::EPIPE, format!("{what} (the peer closed it)")),
        Some(code) => (code, what.to_string()),
        // Not from the kernel (a short write, a timeout kind): keep Rust's text.
        None => (libc::EIO, format!("{what}: {e}")),
    };
    crate::Step::Mode(step).xc()(XcError::errno_with(step, code, context))
}
