//! Image loading. Images are untrusted input (PV kernels come from guest disks): every
//! offset and size is checked, nothing panics, and errors say what was wrong.

pub mod bzimage;
pub mod decompress;
pub mod elf;
pub mod summary;
pub mod xen_notes;

use crate::error::Error;
use std::path::Path;

/// Largest image read from disk by default (`XC_DOM_DECOMPRESS_MAX`, 1 GiB).
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 1 << 30;

/// Read a whole file of at most `max_bytes`, reporting failures as `step` would in C.
pub fn read_file(step: &'static str, path: &Path, max_bytes: u64) -> Result<Vec<u8>, Error> {
    let fail = |code: i32, reason: String| Error::Image {
        step,
        code,
        path: path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(io_code(&e), io_text(&e)))?;
    if !meta.is_file() {
        return Err(fail(libc::EINVAL, "not a regular file".into()));
    }
    if meta.len() > max_bytes {
        return Err(fail(
            libc::EFBIG,
            format!("{} bytes exceeds the limit of {max_bytes}", meta.len()),
        ));
    }
    std::fs::read(path).map_err(|e| fail(io_code(&e), io_text(&e)))
}

fn io_code(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// The system's text for an I/O error, without Rust's "(os error N)" suffix.
fn io_text(e: &std::io::Error) -> String {
    e.raw_os_error()
        .map_or_else(|| e.to_string(), crate::hypervisor::strerror)
}
