//! Image loading. Images are untrusted input (PV kernels come from guest disks): every
//! offset and size is checked, nothing panics, and errors say what was wrong.

pub mod bzimage;
pub mod cache;
pub use cache::KernelImage;
pub mod decompress;
pub mod elf;
pub mod summary;
pub mod xen_notes;

use crate::error::{Error, Step};
use decompress::{DecompressError, Format};
use std::path::Path;

/// Largest image read from disk by default (`XC_DOM_DECOMPRESS_MAX`, 1 GiB).
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 1 << 30;

/// Read a whole file of at most `max_bytes`, reporting failures as `step` would in C.
pub fn read_file(step: Step, path: &Path, max_bytes: u64) -> Result<Vec<u8>, Error> {
    let fail = |code: i32, reason: String| step.image(code, path.display().to_string(), reason);
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

/// A PV or PVH kernel file unpacked as `read_file`, `inflate_kernel_file` and `unwrap_bzimage`
/// do (read and gzip failures reported as `step`, bzImage ones as `xc_dom_parse_image`), through
/// the process-wide [`cache::KERNELS`]: repeat builds of one kernel decompress it once.
pub fn load_kernel_cached(
    step: Step,
    path: &Path,
    limit: u64,
) -> Result<cache::KernelImage, Error> {
    cache::KERNELS.load(step, path, limit)
}

/// A failure to unpack a kernel: `(errno, reason)`, EFBIG past the size limit, EINVAL else.
pub type UnpackError = (i32, String);

fn unpack_error(e: &DecompressError) -> i32 {
    match e {
        DecompressError::TooLarge { .. } => libc::EFBIG,
        DecompressError::Corrupt { .. } => libc::EINVAL,
        DecompressError::Cancelled { .. } => libc::ECANCELED,
    }
}

/// `xc_dom_kernel_file`'s view of a kernel file: a gzip-compressed file is inflated (to at
/// most `limit` bytes), anything else kept as it is. Returns the bytes and their compression.
pub fn inflate_kernel_file(
    raw: Vec<u8>,
    limit: u64,
) -> Result<(Vec<u8>, Option<Format>), UnpackError> {
    if !decompress::is_gzip(&raw) {
        return Ok((raw, None));
    }
    decompress::gunzip(&raw, limit)
        .map(|data| (data, Some(Format::Gzip)))
        .map_err(|e| (unpack_error(&e), e.to_string()))
}

/// libxenguest's bzImage loader: a bzImage's payload, decompressed (any format libxenguest
/// knows) to at most `limit` bytes, is the ELF kernel; any other image is returned as it is
/// (with the `compression` it came in).
pub fn unwrap_bzimage(
    data: Vec<u8>,
    compression: Option<Format>,
    limit: u64,
) -> Result<(Vec<u8>, Option<Format>), UnpackError> {
    if !bzimage::is_bzimage(&data) {
        return Ok((data, compression));
    }
    match bzimage::unpack(&data, limit) {
        Ok((elf, format)) => Ok((elf, Some(format))),
        Err(bzimage::BzImageError::Decompress(DecompressError::TooLarge { format, limit })) => {
            Err((
                libc::EFBIG,
                format!(
                    "kernel image too large: the {format} payload decompresses past the limit \
                     of {limit} bytes"
                ),
            ))
        }
        Err(e) => Err((libc::EINVAL, e.to_string())),
    }
}

fn io_code(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// The system's text for an I/O error, without Rust's "(os error N)" suffix.
fn io_text(e: &std::io::Error) -> String {
    e.raw_os_error()
        .map_or_else(|| e.to_string(), crate::hypervisor::strerror)
}
