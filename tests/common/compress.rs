//! Compressors for test images: each format libxenguest decompresses, written as Linux writes
//! a bzImage payload (the uncompressed size appended where Linux appends it).
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    reason = "fixtures pack small test sizes into the fields of the images they build"
)]

use std::io::Write;

fn with_size(mut v: Vec<u8>, n: usize) -> Vec<u8> {
    v.extend_from_slice(&(n as u32).to_le_bytes());
    v
}

/// Compress `data` as Linux does for a bzImage payload.
pub fn compress(format: &str, data: &[u8]) -> Vec<u8> {
    match format {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "bzip2" => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(data).unwrap();
            with_size(e.finish().unwrap(), data.len())
        }
        "xz" => {
            let mut filters = xz2::stream::Filters::new();
            filters.x86();
            filters.lzma2(&xz2::stream::LzmaOptions::new_preset(1).unwrap());
            let s = xz2::stream::Stream::new_stream_encoder(&filters, xz2::stream::Check::Crc32)
                .unwrap();
            let mut e = xz2::write::XzEncoder::new_stream(Vec::new(), s);
            e.write_all(data).unwrap();
            with_size(e.finish().unwrap(), data.len())
        }
        "lzma" => {
            let o = xz2::stream::LzmaOptions::new_preset(1).unwrap();
            let s = xz2::stream::Stream::new_lzma_encoder(&o).unwrap();
            let mut e = xz2::write::XzEncoder::new_stream(Vec::new(), s);
            e.write_all(data).unwrap();
            with_size(e.finish().unwrap(), data.len())
        }
        "zstd" => with_size(
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest),
            data.len(),
        ),
        "lz4" => {
            let mut v = 0x184C_2102u32.to_le_bytes().to_vec();
            for chunk in data.chunks(8 << 20) {
                let c = lz4_flex::block::compress(chunk);
                v.extend_from_slice(&(c.len() as u32).to_le_bytes());
                v.extend_from_slice(&c);
            }
            with_size(v, data.len())
        }
        "lzo" => {
            // lzop with stored blocks (src == dst), as lzop writes incompressible data.
            let mut v = vec![0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a];
            v.extend_from_slice(&0x1030u16.to_be_bytes());
            v.extend_from_slice(&0x2080u16.to_be_bytes());
            v.extend_from_slice(&0x0940u16.to_be_bytes());
            v.extend_from_slice(&[1, 9]);
            v.extend_from_slice(&[0; 4]); // flags
            v.extend_from_slice(&[0; 12]); // mode, mtime
            v.push(0); // name
            v.extend_from_slice(&[0; 4]); // header checksum
            for chunk in data.chunks(256 << 10) {
                v.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
                v.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
                v.extend_from_slice(&[0; 4]);
                v.extend_from_slice(chunk);
            }
            v.extend_from_slice(&[0; 4]);
            with_size(v, data.len())
        }
        other => panic!("{other}"),
    }
}
