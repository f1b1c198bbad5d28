//! Decompression of kernels and ramdisks, with a hard limit on the output.
//!
//! The formats are the ones libxenguest accepts inside a bzImage (`xg_dom_bzimageloader.c`):
//! gzip, bzip2, xz, lzma, lzo (lzop framing) and lz4 (legacy framing), plus zstd. Kernel
//! images come from guest disks, so every decoder here stops as soon as the output would pass
//! the caller's limit (a decompression bomb costs at most `limit` bytes of memory and the time
//! to produce them), and corrupt or truncated input is an error, never a panic.
//!
//! Where libxenguest trusts the size a stream announces (the gzip trailer, the 4-byte size
//! Linux appends to its payloads) to size its buffer, these decoders only use it as a hint:
//! the limit is enforced on what is actually produced.

use crate::types::usize_of;
use std::fmt;
use std::io::Read;

/// A compression format, recognised by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// gzip (`1f 8b`).
    Gzip,
    /// bzip2 (`BZh`).
    Bzip2,
    /// xz (`fd 37 7a 58 5a 00`).
    Xz,
    /// LZMA "alone" (`5d 00`).
    Lzma,
    /// lzop (`89 4c 5a 4f`).
    Lzo,
    /// LZ4 legacy frame (`02 21 4c 18`).
    Lz4,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Gzip => "gzip",
            Format::Bzip2 => "bzip2",
            Format::Xz => "xz",
            Format::Lzma => "lzma",
            Format::Lzo => "lzo",
            Format::Lz4 => "lz4",
            Format::Zstd => "zstd",
        })
    }
}

impl Format {
    /// The format `data` starts with, checking magics in libxenguest's order.
    pub fn detect(data: &[u8]) -> Option<Format> {
        const MAGICS: [(&[u8], Format); 7] = [
            (b"\x1f\x8b", Format::Gzip),
            (b"BZh", Format::Bzip2),
            (b"\xfd7zXZ\x00", Format::Xz),
            (b"\x28\xb5\x2f\xfd", Format::Zstd),
            (b"\x5d\x00", Format::Lzma),
            (b"\x89LZO", Format::Lzo),
            (b"\x02\x21", Format::Lz4),
        ];
        MAGICS
            .iter()
            .find(|(magic, _)| data.starts_with(magic))
            .map(|&(_, f)| f)
    }
}

/// Why a decompression failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    /// The output would pass the limit (a decompression bomb, or a limit set too low).
    #[error("{format} data decompresses to more than the limit of {limit} bytes")]
    TooLarge {
        /// The format.
        format: Format,
        /// The limit, bytes.
        limit: u64,
    },
    /// The data is corrupt or truncated.
    #[error("corrupt {format} data: {reason}")]
    Corrupt {
        /// The format.
        format: Format,
        /// What the decoder said.
        reason: String,
    },
    /// The build this decompression is for was cancelled (see [`crate::cancel`]).
    #[error("{format} decompression stopped: the build was cancelled")]
    Cancelled {
        /// The format.
        format: Format,
    },
}

/// Compressed bytes handed to liblzma per call, so that a cancel is seen within a bounded
/// amount of output (a few MiB) even when the output buffer has room for the whole kernel.
const LZMA_INPUT_CHUNK: usize = 256 << 10;

/// A cancellation check point, between bounded pieces of output.
fn checkpoint(format: Format) -> Result<(), DecompressError> {
    match crate::cancel::requested() {
        true => Err(DecompressError::Cancelled { format }),
        false => Ok(()),
    }
}

/// Memory the xz and lzma decoders may use (`LZMA_BLOCK_SIZE` in libxenguest, 128 MiB).
pub const LZMA_MEMLIMIT: u64 = 128 << 20;

/// Decompress `data` of `format`, producing at most `limit` bytes. Data after the end of
/// the first stream (such as the size Linux appends to its payloads) is ignored.
pub fn decompress(format: Format, data: &[u8], limit: u64) -> Result<Vec<u8>, DecompressError> {
    decompress_sized(format, data, limit, 0)
}

/// [`decompress`] into a buffer sized up front for `expected_bytes` (at most `limit`), the
/// size the producer says it wrote (a bzImage payload ends with it), as libxenguest sizes
/// its output: no regrowth of a large kernel. A wrong hint only costs speed.
pub fn decompress_sized(
    format: Format,
    data: &[u8],
    limit: u64,
    expected_bytes: u64,
) -> Result<Vec<u8>, DecompressError> {
    let corrupt = |reason: String| DecompressError::Corrupt { format, reason };
    let out = Vec::with_capacity(usize_of(expected_bytes.min(limit)));
    match format {
        Format::Gzip => read_limited(format, flate2::read::GzDecoder::new(data), limit, out),
        Format::Bzip2 => read_limited(format, bzip2::read::BzDecoder::new(data), limit, out),
        Format::Xz => {
            let stream = xz2::stream::Stream::new_stream_decoder(LZMA_MEMLIMIT, 0)
                .map_err(|e| corrupt(e.to_string()))?;
            run_lzma(format, stream, data, limit, out)
        }
        Format::Lzma => {
            let stream = xz2::stream::Stream::new_lzma_decoder(LZMA_MEMLIMIT)
                .map_err(|e| corrupt(e.to_string()))?;
            run_lzma(format, stream, data, limit, out)
        }
        Format::Zstd => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(data)
                .map_err(|e| corrupt(e.to_string()))?;
            read_limited(format, decoder, limit, out)
        }
        Format::Lzo => unlzop(data, limit),
        Format::Lz4 => unlz4_legacy(data, limit),
    }
}

/// Decompress one gzip member, producing at most `limit` bytes.
pub fn gunzip(data: &[u8], limit: u64) -> Result<Vec<u8>, DecompressError> {
    read_limited(
        Format::Gzip,
        flate2::read::GzDecoder::new(data),
        limit,
        Vec::new(),
    )
}

/// Whether `data` looks gzipped: the magic and room for the trailer, as libxenguest's
/// `xc_dom_check_gzip` asks.
pub fn is_gzip(data: &[u8]) -> bool {
    data.len() >= 6 && data.starts_with(b"\x1f\x8b")
}

/// Drive a liblzma decoder to the end of its stream (what follows it is ignored).
fn run_lzma(
    format: Format,
    mut stream: xz2::stream::Stream,
    data: &[u8],
    limit: u64,
    mut out: Vec<u8>,
) -> Result<Vec<u8>, DecompressError> {
    let corrupt = |reason: String| DecompressError::Corrupt { format, reason };
    let mut pos = 0usize;
    loop {
        checkpoint(format)?;
        // liblzma writes straight into the spare capacity; one byte past the limit tells.
        if out.len() == out.capacity() {
            if out.len() as u64 > limit {
                return Err(DecompressError::TooLarge { format, limit });
            }
            let grown = (out.capacity() as u64 * 2)
                .max(64 << 10)
                .min(limit.saturating_add(1));
            out.reserve_exact(usize_of(grown) - out.len());
        }
        let (in0, out0) = (stream.total_in(), stream.total_out());
        let input_end = (pos + LZMA_INPUT_CHUNK).min(data.len());
        let action = if input_end == data.len() {
            xz2::stream::Action::Finish
        } else {
            xz2::stream::Action::Run
        };
        let status = stream
            .process_vec(&data[pos..input_end], &mut out, action)
            .map_err(|e| corrupt(e.to_string()))?;
        let consumed = usize_of(stream.total_in() - in0);
        let produced = usize_of(stream.total_out() - out0);
        pos += consumed;
        if out.len() as u64 > limit {
            return Err(DecompressError::TooLarge { format, limit });
        }
        if status == xz2::stream::Status::StreamEnd {
            return Ok(out);
        }
        if consumed == 0 && produced == 0 && out.len() < out.capacity() {
            return Err(corrupt("truncated stream".into()));
        }
    }
}

/// Read `r` to its end, failing as soon as the output passes `limit`.
fn read_limited(
    format: Format,
    mut r: impl Read,
    limit: u64,
    mut out: Vec<u8>,
) -> Result<Vec<u8>, DecompressError> {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(DecompressError::Corrupt {
                    format,
                    reason: e.to_string(),
                })
            }
        };
        push_limited(format, &mut out, &buf[..n], limit)?;
    }
}

/// Append `chunk` to `out` unless that passes `limit`; never reserves past the limit.
fn push_limited(
    format: Format,
    out: &mut Vec<u8>,
    chunk: &[u8],
    limit: u64,
) -> Result<(), DecompressError> {
    checkpoint(format)?;
    let want = out.len() as u64 + chunk.len() as u64;
    if want > limit {
        return Err(DecompressError::TooLarge { format, limit });
    }
    if want > out.capacity() as u64 {
        let grown = (out.capacity() as u64 * 2).clamp(want, limit.max(want));
        out.reserve_exact(usize_of(grown) - out.len());
    }
    out.extend_from_slice(chunk);
    Ok(())
}

fn le32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Largest block an lzop stream may have (`LZOP_MAX_BLOCK_SIZE`, 64 MiB).
const LZOP_MAX_BLOCK_SIZE: u32 = 64 << 20;
const LZOP_MAGIC: [u8; 9] = [0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a];
const LZOP_HEADER_HAS_FILTER: u32 = 0x800;

/// An lzop file as Linux builds its payloads (`lzop -9` plus a 4-byte size), decoded block
/// by block with LZO1X, as `xc_try_lzo1x_decode` walks it.
fn unlzop(data: &[u8], limit: u64) -> Result<Vec<u8>, DecompressError> {
    let format = Format::Lzo;
    let corrupt = |reason: &str| DecompressError::Corrupt {
        format,
        reason: reason.into(),
    };
    if data.len() < 16 || data[..9] != LZOP_MAGIC {
        return Err(corrupt("unrecognised lzop header"));
    }
    // Linux appends the decompressed size; libxenguest sizes its buffer from it.
    let end = data.len() - 4;
    let announced = u64::from(le32(data, end).unwrap_or(0));
    if announced > limit {
        return Err(DecompressError::TooLarge { format, limit });
    }
    let version = u16::from_be_bytes([data[9], data[10]]);
    // Skip magic, version, library version, version needed and method.
    let mut at = 16usize;
    if version >= 0x0940 {
        at += 1; // level
    }
    let flags = be32(data, at).ok_or_else(|| corrupt("incomplete header"))?;
    at += if flags & LZOP_HEADER_HAS_FILTER != 0 {
        8
    } else {
        4
    };
    at += 8; // mode, mtime low
    if version >= 0x0940 {
        at += 4; // mtime high
    }
    let name_len = usize::from(*data.get(at).ok_or_else(|| corrupt("incomplete header"))?);
    at += 1 + name_len + 4; // file name, header checksum
    if at > end {
        return Err(corrupt("incomplete header"));
    }
    let mut out: Vec<u8> = Vec::new();
    loop {
        checkpoint(format)?;
        let dst_len = le32_be_block(data, at, end).ok_or_else(|| corrupt("short input"))?;
        if dst_len == 0 {
            if out.len() as u64 != announced {
                return Err(corrupt("unexpected output size"));
            }
            return Ok(out);
        }
        if dst_len > LZOP_MAX_BLOCK_SIZE {
            return Err(corrupt("block size too large"));
        }
        let src_len = le32_be_block(data, at + 4, end).ok_or_else(|| corrupt("short input"))?;
        // Skip the sizes and the block checksum.
        at += 12;
        if at > end {
            return Err(corrupt("short input"));
        }
        if src_len == 0 || src_len > dst_len || src_len as usize > end - at {
            return Err(corrupt("bad source length"));
        }
        if out.len() as u64 + u64::from(dst_len) > limit {
            return Err(DecompressError::TooLarge { format, limit });
        }
        let src = &data[at..at + src_len as usize];
        if src_len == dst_len {
            // lzop stores incompressible blocks as they are.
            out.extend_from_slice(src);
        } else {
            let before = out.len();
            lzo1x_decompress(src, &mut out, before + dst_len as usize).map_err(corrupt)?;
            if out.len() - before != dst_len as usize {
                return Err(corrupt("input underrun"));
            }
        }
        at += src_len as usize;
    }
}

/// lzop stores block sizes big-endian.
fn le32_be_block(data: &[u8], at: usize, end: usize) -> Option<u32> {
    if at.checked_add(4)? > end {
        return None;
    }
    be32(data, at)
}

/// Decode one LZO1X block into `out`, which may not grow past `max` bytes (the block's
/// announced size). Every read and every back-reference is checked.
pub fn lzo1x_decompress(input: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), &'static str> {
    let base = out.len();
    let mut ip = 0usize;
    let byte = |ip: &mut usize| -> Result<usize, &'static str> {
        let b = *input.get(*ip).ok_or("input overrun")?;
        *ip += 1;
        Ok(usize::from(b))
    };
    // A run length: `base` plus 255 per zero byte plus the next byte.
    let long_len = |ip: &mut usize, base_len: usize| -> Result<usize, &'static str> {
        let mut n = base_len;
        loop {
            let b = *input.get(*ip).ok_or("input overrun")?;
            *ip += 1;
            if b != 0 {
                return Ok(n + usize::from(b));
            }
            n = n.checked_add(255).ok_or("length overflow")?;
            if n > max {
                return Err("output overrun");
            }
        }
    };
    let literals = |ip: &mut usize, out: &mut Vec<u8>, n: usize| -> Result<(), &'static str> {
        let end = ip.checked_add(n).ok_or("input overrun")?;
        let src = input.get(*ip..end).ok_or("input overrun")?;
        if out.len() + n > max {
            return Err("output overrun");
        }
        out.extend_from_slice(src);
        *ip = end;
        Ok(())
    };
    let copy_match = |out: &mut Vec<u8>, dist: usize, n: usize| -> Result<(), &'static str> {
        if dist == 0 || dist > out.len() - base {
            return Err("look-behind overrun");
        }
        if out.len() + n > max {
            return Err("output overrun");
        }
        let from = out.len() - dist;
        for i in 0..n {
            let b = out[from + i];
            out.push(b);
        }
        Ok(())
    };

    // `state`: literals copied by the previous instruction (4 = a long run).
    let mut state;
    let first = *input.first().ok_or("input overrun")?;
    if first > 17 {
        ip = 1;
        let t = usize::from(first) - 17;
        literals(&mut ip, out, t)?;
        state = if t < 4 { t } else { 4 };
    } else {
        state = 0;
    }
    loop {
        let t = byte(&mut ip)?;
        let next_state;
        if t >= 64 {
            // M2: 3..8 bytes within 2 KiB.
            let h = byte(&mut ip)?;
            copy_match(out, 1 + ((t >> 2) & 7) + (h << 3), (t >> 5) + 1)?;
            next_state = t & 3;
        } else if t >= 32 {
            // M3: within 16 KiB.
            let mut len = t & 31;
            if len == 0 {
                len = long_len(&mut ip, 31)?;
            }
            let d = byte(&mut ip)? | (byte(&mut ip)? << 8);
            copy_match(out, 1 + (d >> 2), len + 2)?;
            next_state = d & 3;
        } else if t >= 16 {
            // M4: 16..48 KiB, or the end of the stream.
            let mut len = t & 7;
            if len == 0 {
                len = long_len(&mut ip, 7)?;
            }
            let d = byte(&mut ip)? | (byte(&mut ip)? << 8);
            let dist = ((t & 8) << 11) + (d >> 2);
            if dist == 0 {
                return if ip == input.len() {
                    Ok(())
                } else {
                    Err("unconsumed input")
                };
            }
            copy_match(out, dist + 0x4000, len + 2)?;
            next_state = d & 3;
        } else if state == 0 {
            // A literal run of 4 or more.
            let len = if t == 0 { long_len(&mut ip, 15)? } else { t } + 3;
            literals(&mut ip, out, len)?;
            state = 4;
            continue;
        } else if state < 4 {
            // M1 after 1..3 literals: 2 bytes within 1 KiB.
            let h = byte(&mut ip)?;
            copy_match(out, 1 + (t >> 2) + (h << 2), 2)?;
            next_state = t & 3;
        } else {
            // M1 after a long literal run: 3 bytes at 2..3 KiB.
            let h = byte(&mut ip)?;
            copy_match(out, 2049 + (t >> 2) + (h << 2), 3)?;
            next_state = t & 3;
        }
        literals(&mut ip, out, next_state)?;
        state = next_state;
    }
}

/// `ARCHIVE_MAGICNUMBER` of the LZ4 legacy frame.
const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
/// Largest block of the legacy frame (8 MiB).
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

/// The LZ4 legacy frame Linux builds its payloads with (`lz4 -l` plus a 4-byte size):
/// magic, then blocks of `le32 compressed size` + LZ4 block, each at most 8 MiB out.
fn unlz4_legacy(data: &[u8], limit: u64) -> Result<Vec<u8>, DecompressError> {
    let format = Format::Lz4;
    let corrupt = |reason: String| DecompressError::Corrupt { format, reason };
    if le32(data, 0) != Some(LZ4_LEGACY_MAGIC) {
        return Err(corrupt("missing legacy frame magic".into()));
    }
    // The size Linux appends is not part of the frame; the frame has no end marker, so the
    // output must match it (a cut stream is caught here).
    if data.len() < 8 {
        return Err(corrupt("truncated frame".into()));
    }
    let end = data.len() - 4;
    let announced = u64::from(le32(data, end).unwrap_or(0));
    if announced > limit {
        return Err(DecompressError::TooLarge { format, limit });
    }
    let mut at = 4usize;
    let mut out: Vec<u8> = Vec::new();
    let mut block = vec![0u8; LZ4_LEGACY_BLOCK];
    while at < end {
        let Some(size) = le32(data, at).filter(|_| at + 4 <= end) else {
            return Err(corrupt("truncated block header".into()));
        };
        at += 4;
        if size == LZ4_LEGACY_MAGIC {
            // Concatenated frames.
            continue;
        }
        let size = size as usize;
        if size > end - at {
            return Err(corrupt(format!(
                "block of {size} bytes at offset {at:#x} passes the end"
            )));
        }
        let n = lz4_flex::block::decompress_into(&data[at..at + size], &mut block)
            .map_err(|e| corrupt(e.to_string()))?;
        push_limited(format, &mut out, &block[..n], limit)?;
        at += size;
    }
    if out.len() as u64 != announced {
        return Err(corrupt(format!(
            "{} bytes decoded, the image announces {announced}",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the fixture encoders pack small test sizes and bytes into their fields"
)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    fn sample() -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..60_000u32 {
            v.extend_from_slice(format!("line {} {}\n", i % 977, i / 3).as_bytes());
        }
        v
    }

    fn with_size(mut v: Vec<u8>, size: usize) -> Vec<u8> {
        v.extend_from_slice(&(size as u32).to_le_bytes());
        v
    }

    pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn bzip2(data: &[u8]) -> Vec<u8> {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        e.write_all(data).unwrap();
        with_size(e.finish().unwrap(), data.len())
    }

    fn xz(data: &[u8]) -> Vec<u8> {
        // As Linux does: the x86 BCJ filter, then LZMA2, CRC32 check.
        let mut filters = xz2::stream::Filters::new();
        filters.x86();
        filters.lzma2(&xz2::stream::LzmaOptions::new_preset(6).unwrap());
        let stream =
            xz2::stream::Stream::new_stream_encoder(&filters, xz2::stream::Check::Crc32).unwrap();
        let mut e = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
        e.write_all(data).unwrap();
        with_size(e.finish().unwrap(), data.len())
    }

    fn lzma(data: &[u8]) -> Vec<u8> {
        let opts = xz2::stream::LzmaOptions::new_preset(6).unwrap();
        let stream = xz2::stream::Stream::new_lzma_encoder(&opts).unwrap();
        let mut e = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
        e.write_all(data).unwrap();
        with_size(e.finish().unwrap(), data.len())
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        let v =
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest);
        with_size(v, data.len())
    }

    pub(crate) fn lz4(data: &[u8]) -> Vec<u8> {
        let mut v = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        for chunk in data.chunks(LZ4_LEGACY_BLOCK) {
            let c = lz4_flex::block::compress(chunk);
            v.extend_from_slice(&(c.len() as u32).to_le_bytes());
            v.extend_from_slice(&c);
        }
        with_size(v, data.len())
    }

    /// An lzop file whose blocks are stored (src == dst) or made of hand-built LZO1X
    /// instructions, with Linux's appended size.
    pub(crate) fn lzop(data: &[u8]) -> Vec<u8> {
        let mut v = LZOP_MAGIC.to_vec();
        v.extend_from_slice(&0x1030u16.to_be_bytes()); // version
        v.extend_from_slice(&0x2080u16.to_be_bytes()); // library
        v.extend_from_slice(&0x0940u16.to_be_bytes()); // needed
        v.push(1); // method
        v.push(9); // level
        v.extend_from_slice(&0u32.to_be_bytes()); // flags
        v.extend_from_slice(&0o100644u32.to_be_bytes()); // mode
        v.extend_from_slice(&0u32.to_be_bytes()); // mtime low
        v.extend_from_slice(&0u32.to_be_bytes()); // mtime high
        v.push(0); // name
        v.extend_from_slice(&0u32.to_be_bytes()); // header checksum
        for chunk in data.chunks(256 << 10) {
            let c = lzo1x_literal_and_repeat(chunk);
            let stored = c.len() >= chunk.len();
            v.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
            let body = if stored { chunk.to_vec() } else { c };
            v.extend_from_slice(&(body.len() as u32).to_be_bytes());
            v.extend_from_slice(&0u32.to_be_bytes()); // checksum
            v.extend_from_slice(&body);
        }
        v.extend_from_slice(&0u32.to_be_bytes());
        with_size(v, data.len())
    }

    /// A tiny LZO1X encoder: one literal run of the first 4+ bytes, then M3 copies of
    /// distance 1 for runs of equal bytes and literal runs otherwise — enough to exercise
    /// literal runs, matches, the state machine and the end marker.
    fn lzo1x_literal_and_repeat(data: &[u8]) -> Vec<u8> {
        fn run_len(v: &mut Vec<u8>, n: usize, base: usize) {
            let mut rest = n - base;
            while rest > 255 {
                v.push(0);
                rest -= 255;
            }
            v.push(rest as u8);
        }
        let mut v = Vec::new();
        let mut i = 0;
        let mut pending_lit = 0usize; // literals queued since the last match
        let mut lit_start = 0usize;
        let flush_literals = |v: &mut Vec<u8>, from: usize, n: usize, first: bool| {
            if n == 0 {
                return;
            }
            if first && n <= 238 {
                v.push((n + 17) as u8);
            } else if n - 3 <= 15 {
                v.push((n - 3) as u8);
            } else {
                v.push(0);
                run_len(v, n - 3, 15);
            }
            v.extend_from_slice(&data[from..from + n]);
        };
        let mut first = true;
        while i < data.len() {
            let mut r = 1;
            while i + r < data.len() && data[i + r] == data[i] {
                r += 1;
            }
            // A match needs >= 4 literals before it (long-run state) and a run of >= 4.
            if r >= 5 && pending_lit >= 4 {
                flush_literals(&mut v, lit_start, pending_lit + 1, first);
                first = false;
                // M3, distance 1, length r - 1.
                let len = r - 1;
                if len - 2 <= 31 {
                    v.push(32 | (len - 2) as u8);
                } else {
                    v.push(32);
                    run_len(&mut v, len - 2, 31);
                }
                v.extend_from_slice(&0u16.to_le_bytes()); // (dist-1)<<2, state 0
                i += r;
                pending_lit = 0;
                lit_start = i;
                continue;
            }
            pending_lit += r;
            i += r;
        }
        if pending_lit > 0 && (pending_lit >= 4 || first) {
            flush_literals(&mut v, lit_start, pending_lit, first);
        } else if pending_lit > 0 {
            return vec![0xff; data.len() + 1]; // too awkward: store the block
        }
        v.extend_from_slice(&[0x11, 0, 0]);
        v
    }

    fn all_formats(data: &[u8]) -> Vec<(Format, Vec<u8>)> {
        vec![
            (Format::Gzip, gzip(data)),
            (Format::Bzip2, bzip2(data)),
            (Format::Xz, xz(data)),
            (Format::Lzma, lzma(data)),
            (Format::Zstd, zstd(data)),
            (Format::Lz4, lz4(data)),
            (Format::Lzo, lzop(data)),
        ]
    }

    #[test]
    fn every_format_round_trips_and_is_detected() {
        let data = sample();
        for (format, packed) in all_formats(&data) {
            assert_eq!(Format::detect(&packed), Some(format));
            let out = decompress(format, &packed, 1 << 30).unwrap_or_else(|e| panic!("{e}"));
            assert!(out == data, "{format}: output differs");
        }
    }

    #[test]
    fn lzo_blocks_with_matches_decode() {
        let mut data = b"abcdefgh".to_vec();
        data.extend(std::iter::repeat_n(b'z', 100_000));
        data.extend_from_slice(b"tail bytes here");
        data.extend(std::iter::repeat_n(b'q', 40));
        data.extend_from_slice(b"wxyz");
        let packed = lzop(&data);
        assert!(packed.len() < 2_000, "matches were used");
        assert_eq!(decompress(Format::Lzo, &packed, 1 << 20).unwrap(), data);
    }

    #[test]
    fn the_limit_is_exact_whatever_the_size_hint() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let n = data.len() as u64;
        for (format, packed) in all_formats(&data) {
            for hint in [0, 1, n - 1, n, n + 1, 1 << 40] {
                let ok = decompress_sized(format, &packed, n, hint);
                assert_eq!(ok.as_deref(), Ok(&data[..]), "{format} hint {hint}");
                for limit in [n - 1, 10, 0] {
                    assert_eq!(
                        decompress_sized(format, &packed, limit, hint),
                        Err(DecompressError::TooLarge { format, limit }),
                        "{format} hint {hint} limit {limit}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_cancelled_build_stops_every_format() {
        let data = sample();
        let cancel = crate::cancel::Cancel::new();
        cancel.cancel();
        for (format, packed) in all_formats(&data) {
            let out = cancel.scope(|| decompress(format, &packed, 1 << 30));
            assert_eq!(out, Err(DecompressError::Cancelled { format }), "{format}");
        }
    }

    #[test]
    fn a_cancel_from_another_thread_stops_a_long_decompression() {
        // 256 MiB of zeros: far more work than the 20 ms before the cancel comes.
        let zeros = vec![0u8; 256 << 20];
        for format in [Format::Gzip, Format::Xz] {
            let packed = match format {
                Format::Gzip => gzip(&zeros),
                _ => xz(&zeros),
            };
            let cancel = crate::cancel::Cancel::new();
            let remote = cancel.clone();
            let out = std::thread::scope(|s| {
                s.spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    remote.cancel();
                });
                cancel.scope(|| decompress(format, &packed, 1 << 30))
            });
            assert_eq!(out, Err(DecompressError::Cancelled { format }), "{format}");
        }
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        let zeros = vec![0u8; 8 << 20];
        for (format, packed) in all_formats(&zeros) {
            assert_eq!(
                decompress(format, &packed, 1 << 20),
                Err(DecompressError::TooLarge {
                    format,
                    limit: 1 << 20
                }),
                "{format}"
            );
            assert_eq!(decompress(format, &packed, 8 << 20).unwrap().len(), 8 << 20);
        }
    }

    #[test]
    fn truncated_and_corrupt_data_are_errors_not_panics() {
        let data = sample();
        for (format, packed) in all_formats(&data[..100_000]) {
            // Cut inside the stream (the last 4 bytes are Linux's size).
            for cut in [1, 2, 7, 16, 40, packed.len() / 2, packed.len() - 9] {
                let r = decompress(format, &packed[..cut], 1 << 30);
                assert!(
                    r.as_ref().map_or(true, |v| v.len() < 100_000),
                    "{format} cut at {cut} gave everything"
                );
                assert!(
                    r.is_err(),
                    "{format} cut at {cut}: {:?}",
                    r.map(|v| v.len())
                );
            }
            let mut flipped = packed.clone();
            for i in (20..flipped.len() - 4).step_by(97) {
                flipped[i] ^= 0x5a;
            }
            if let Ok(v) = decompress(format, &flipped, 1 << 30) {
                assert_ne!(v, data[..100_000], "{format}: corruption went unnoticed");
            }
        }
    }

    #[test]
    fn lzo1x_rejects_bad_back_references() {
        // M2 with a distance before the start of the output.
        let mut out = Vec::new();
        assert_eq!(
            lzo1x_decompress(&[18, b'a', 0x40, 0x10], &mut out, 100),
            Err("look-behind overrun")
        );
        // Output larger than announced.
        let mut out = Vec::new();
        let stream = [
            17 + 8,
            b'a',
            b'b',
            b'c',
            b'd',
            b'e',
            b'f',
            b'g',
            b'h',
            0x11,
            0,
            0,
        ];
        assert_eq!(
            lzo1x_decompress(&stream, &mut out, 4),
            Err("output overrun")
        );
        let mut out = Vec::new();
        lzo1x_decompress(&stream, &mut out, 8).unwrap();
        assert_eq!(out, b"abcdefgh");
        // Fuzz a little: random bytes never panic.
        let mut x = 12345u32;
        for _ in 0..2000 {
            let n = (x % 64) as usize;
            let input: Vec<u8> = (0..n)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let mut out = Vec::new();
            let _ = lzo1x_decompress(&input, &mut out, 4096);
            assert!(out.len() <= 4096);
        }
    }
}
