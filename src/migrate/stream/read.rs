//! Reading a stream: the two headers, then records one at a time, each body read only as
//! far as its bytes arrive.

use super::format::{
    malformed, rec, DomainHeader, GuestType, Record, DHDR_BYTES, IHDR_BYTES, IHDR_ID, IHDR_MARKER,
    IHDR_OPT_BIG_ENDIAN, REC_ALIGN, REC_LENGTH_MAX,
};
use super::StreamError;
use std::io::{self, Read};

/// A record as read: its type and body, and where it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// The type, optional bit included.
    pub rtype: u32,
    /// The body, without padding.
    pub body: Vec<u8>,
    /// Offset of the record's header in the stream.
    pub at: u64,
}

impl RawRecord {
    /// The record, typed and checked.
    pub fn decode(&self) -> Result<Record<'_>, StreamError> {
        Record::decode(self.rtype, &self.body).map_err(|why| malformed(self.rtype, self.at, why))
    }

    /// A reader may skip it (`REC_TYPE_OPTIONAL`).
    pub fn optional(&self) -> bool {
        self.rtype & super::format::REC_TYPE_OPTIONAL != 0
    }

    /// The record's name for messages.
    pub fn name(&self) -> String {
        rec::display(self.rtype)
    }
}

/// Reads a stream from `R`.
#[derive(Debug)]
pub struct StreamReader<R> {
    inner: R,
    /// Bytes consumed so far.
    offset: u64,
}

impl<R: Read> StreamReader<R> {
    /// A reader at the start of a stream.
    pub fn new(inner: R) -> Self {
        StreamReader { inner, offset: 0 }
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), StreamError> {
        let at = self.offset;
        self.inner.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => StreamError::Truncated {
                what: what.to_string(),
                at,
            },
            _ => StreamError::Io {
                what: format!("reading {what}"),
                at,
                source: e,
            },
        })?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// The image and domain headers (`read_headers` in libxenguest's `xg_sr_restore.c`):
    /// version 2 or 3, little-endian, a known guest type, 4 KiB pages.
    pub fn read_headers(&mut self) -> Result<DomainHeader, StreamError> {
        let mut ihdr = [0u8; IHDR_BYTES];
        self.exact(&mut ihdr, "the image header")?;
        let bad = |why: String| StreamError::Header {
            header: "image header",
            why,
        };
        let be64 = |r: std::ops::Range<usize>| -> u64 {
            ihdr.get(r)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes)
        };
        let be32 = |r: std::ops::Range<usize>| -> u32 {
            ihdr.get(r)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_be_bytes)
        };
        let marker = be64(0..8);
        if marker != IHDR_MARKER {
            return Err(bad(format!(
                "marker {marker:#018x}, expected {IHDR_MARKER:#018x}"
            )));
        }
        let id = be32(8..12);
        if id != IHDR_ID {
            return Err(bad(format!(
                "id {id:#010x}, expected {IHDR_ID:#010x} (XENF)"
            )));
        }
        let version = be32(12..16);
        if !(2..=3).contains(&version) {
            return Err(bad(format!("version {version}, expected 2 or 3")));
        }
        let options = u16::from_be_bytes([ihdr[16], ihdr[17]]);
        if options & IHDR_OPT_BIG_ENDIAN != 0 {
            return Err(bad(
                "a big-endian stream (only little-endian is read)".into()
            ));
        }

        let mut dhdr = [0u8; DHDR_BYTES];
        self.exact(&mut dhdr, "the domain header")?;
        let bad = |why: String| StreamError::Header {
            header: "domain header",
            why,
        };
        let le32 = |i: usize| u32::from_le_bytes([dhdr[i], dhdr[i + 1], dhdr[i + 2], dhdr[i + 3]]);
        let guest = match le32(0) {
            1 => GuestType::X86Pv,
            2 => GuestType::X86Hvm,
            t => return Err(bad(format!("guest type {t} (1 x86 PV, 2 x86 HVM)"))),
        };
        let page_shift = u16::from_le_bytes([dhdr[4], dhdr[5]]);
        if page_shift != 12 {
            return Err(bad(format!("page shift {page_shift}, expected 12")));
        }
        Ok(DomainHeader {
            version,
            guest,
            xen_major: le32(8),
            xen_minor: le32(12),
        })
    }

    /// The next record (`read_record` in libxenguest's `xg_sr_common.c`): its header, its
    /// body (at most [`REC_LENGTH_MAX`] bytes, read as they arrive) and its padding.
    pub fn next_record(&mut self) -> Result<RawRecord, StreamError> {
        let at = self.offset;
        let mut hdr = [0u8; 8];
        self.exact(&mut hdr, "a record header")?;
        let rtype = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let length = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        if length > REC_LENGTH_MAX {
            return Err(malformed(
                rtype,
                at,
                format!("length {length} exceeds the {REC_LENGTH_MAX}-byte limit"),
            ));
        }
        let name = rec::display(rtype);
        // Grows as bytes arrive: a length field alone allocates nothing.
        let mut body = Vec::new();
        let got = (&mut self.inner)
            .take(u64::from(length))
            .read_to_end(&mut body)
            .map_err(|e| StreamError::Io {
                what: format!("reading the {name} record's body"),
                at,
                source: e,
            })?;
        self.offset += got as u64;
        if got as u64 != u64::from(length) {
            return Err(StreamError::Truncated {
                what: format!("the {name} record ({got} of {length} bytes)"),
                at,
            });
        }
        let pad =
            usize::try_from(u64::from(length).next_multiple_of(REC_ALIGN) - u64::from(length))
                .unwrap_or(0);
        let mut padding = [0u8; 8];
        if let Some(p) = padding.get_mut(..pad) {
            self.exact(p, &format!("the {name} record's padding"))?;
        }
        Ok(RawRecord { rtype, body, at })
    }
}
