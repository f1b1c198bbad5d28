//! Linux bzImage: the x86 boot protocol header, and the compressed ELF payload a Xen PV
//! loader boots (`xg_dom_bzimageloader.c`). The header is untrusted: offsets and lengths
//! are checked against the file.

use super::decompress::{self, DecompressError, Format};
use crate::types::usize_of;

/// Where the setup header's `header` field ("HdrS") sits.
const HDR_MAGIC_AT: usize = 0x202;
/// `setup_sects`.
const SETUP_SECTS_AT: usize = 0x1f1;
/// `version`.
const VERSION_AT: usize = 0x206;
/// `payload_offset` and `payload_length` (boot protocol 2.08).
const PAYLOAD_OFFSET_AT: usize = 0x248;
const PAYLOAD_LENGTH_AT: usize = 0x24c;
/// Size of the setup header libxenguest reads (`struct setup_header`).
pub const SETUP_HEADER_BYTES: usize = 0x250;
/// Oldest boot protocol with a payload description.
pub const MIN_VERSION: u16 = 0x0208;

/// Why a bzImage cannot be unpacked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BzImageError {
    /// Protocol too old to describe its payload.
    #[error("bzImage boot protocol too old ({0:04x}, need 0208)")]
    TooOld(u16),
    /// The payload lies outside the file.
    #[error("bzImage payload at offset {offset:#x}, {length} bytes, is outside the {file_len}-byte image")]
    PayloadOutside {
        /// Payload offset (setup sectors included).
        offset: u64,
        /// Payload length.
        length: u64,
        /// File size.
        file_len: u64,
    },
    /// The payload is in no format we know.
    #[error("unknown compression format of the bzImage payload")]
    UnknownFormat,
    /// Decompression failed.
    #[error("unable to decompress the bzImage payload: {0}")]
    Decompress(#[from] DecompressError),
}

/// Whether `data` carries the boot protocol header ("HdrS" at 0x202).
pub fn is_bzimage(data: &[u8]) -> bool {
    data.len() >= SETUP_HEADER_BYTES && data.get(HDR_MAGIC_AT..HDR_MAGIC_AT + 4) == Some(b"HdrS")
}

fn le16(data: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([data[at], data[at + 1]])
}

fn le32(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

/// The compressed payload of a bzImage and its format. `data` must pass [`is_bzimage`].
pub fn payload(data: &[u8]) -> Result<(&[u8], Format), BzImageError> {
    if !is_bzimage(data) {
        return Err(BzImageError::UnknownFormat);
    }
    // In bounds: is_bzimage checked the header's size.
    let version = le16(data, VERSION_AT);
    if version < MIN_VERSION {
        return Err(BzImageError::TooOld(version));
    }
    let offset =
        (u64::from(data[SETUP_SECTS_AT]) + 1) * 512 + u64::from(le32(data, PAYLOAD_OFFSET_AT));
    let length = u64::from(le32(data, PAYLOAD_LENGTH_AT));
    let file_len = data.len() as u64;
    if offset >= file_len || offset + length > file_len {
        return Err(BzImageError::PayloadOutside {
            offset,
            length,
            file_len,
        });
    }
    let bytes = &data[usize_of(offset)..usize_of(offset + length)];
    let format = Format::detect(bytes).ok_or(BzImageError::UnknownFormat)?;
    Ok((bytes, format))
}

/// Unpack a bzImage: the decompressed payload (the kernel's ELF image), at most `limit`
/// bytes, and the format it was in.
pub fn unpack(data: &[u8], limit: u64) -> Result<(Vec<u8>, Format), BzImageError> {
    let (bytes, format) = payload(data)?;
    // Linux ends every payload with its uncompressed size (gzip's ISIZE is the same field).
    let expected = bytes
        .len()
        .checked_sub(4)
        .map_or(0, |at| u64::from(le32(bytes, at)));
    let elf = decompress::decompress_sized(format, bytes, limit, expected)?;
    Ok((elf, format))
}

/// A bzImage around `payload` (for tests): a setup area of `setup_sects` + 1 sectors and
/// the payload right after it.
#[expect(
    clippy::cast_possible_truncation,
    reason = "a fixture: test payloads are far below the 4 GiB the length field holds"
)]
pub fn wrap(payload: &[u8], setup_sects: u8, version: u16) -> Vec<u8> {
    let setup = (usize::from(setup_sects) + 1) * 512;
    let mut v = vec![0u8; setup.max(SETUP_HEADER_BYTES)];
    v[SETUP_SECTS_AT] = setup_sects;
    v[0x1fe..0x200].copy_from_slice(&0xAA55u16.to_le_bytes());
    v[HDR_MAGIC_AT..HDR_MAGIC_AT + 4].copy_from_slice(b"HdrS");
    v[VERSION_AT..VERSION_AT + 2].copy_from_slice(&version.to_le_bytes());
    v[PAYLOAD_OFFSET_AT..PAYLOAD_OFFSET_AT + 4].copy_from_slice(&0u32.to_le_bytes());
    v[PAYLOAD_LENGTH_AT..PAYLOAD_LENGTH_AT + 4]
        .copy_from_slice(&(payload.len() as u32).to_le_bytes());
    v.truncate(setup);
    v.resize(setup, 0);
    v.extend_from_slice(payload);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacks_a_wrapped_payload() {
        let elf = b"\x7fELF pretend kernel".repeat(1000);
        let gz = decompress::tests::gzip(&elf);
        let img = wrap(&gz, 30, 0x020f);
        assert!(is_bzimage(&img));
        let (out, format) = unpack(&img, 1 << 20).unwrap();
        assert_eq!((out, format), (elf.clone(), Format::Gzip));
        assert!(matches!(
            unpack(&img, 100),
            Err(BzImageError::Decompress(DecompressError::TooLarge { .. }))
        ));
    }

    #[test]
    fn refuses_bad_headers() {
        let img = wrap(b"\x1f\x8bxxxxxxxx", 1, 0x0207);
        assert_eq!(unpack(&img, 1 << 20), Err(BzImageError::TooOld(0x0207)));
        let mut img = wrap(b"\x1f\x8bxxxxxxxx", 1, 0x020f);
        img[PAYLOAD_LENGTH_AT..PAYLOAD_LENGTH_AT + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            unpack(&img, 1 << 20),
            Err(BzImageError::PayloadOutside { .. })
        ));
        let mut img = wrap(b"\x1f\x8bxxxxxxxx", 1, 0x020f);
        img[PAYLOAD_OFFSET_AT..PAYLOAD_OFFSET_AT + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            unpack(&img, 1 << 20),
            Err(BzImageError::PayloadOutside { .. })
        ));
        let img = wrap(b"plain bytes", 1, 0x020f);
        assert_eq!(unpack(&img, 1 << 20), Err(BzImageError::UnknownFormat));
        assert!(!is_bzimage(&img[..0x240]));
        for cut in 0..img.len() {
            let _ = unpack(&img[..cut], 1 << 20);
        }
    }
}
