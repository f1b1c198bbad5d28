//! Writing a stream: version 3, little-endian, each record padded to 8 bytes.

use super::format::{
    rec, GuestType, Record, IHDR_ID, IHDR_MARKER, REC_ALIGN, REC_LENGTH_MAX, VERSION_WRITTEN,
};
use super::StreamError;
use std::io::Write;

/// Writes a stream to `W`.
#[derive(Debug)]
pub struct StreamWriter<W> {
    inner: W,
    offset: u64,
}

impl<W: Write> StreamWriter<W> {
    /// A writer at the start of a stream.
    pub fn new(inner: W) -> Self {
        StreamWriter { inner, offset: 0 }
    }

    /// Bytes written so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.inner
    }

    fn put(&mut self, bytes: &[u8], what: &str) -> Result<(), StreamError> {
        self.inner.write_all(bytes).map_err(|e| StreamError::Io {
            what: format!("writing {what}"),
            at: self.offset,
            source: e,
        })?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// The image header (version 3, little-endian) and the domain header (4 KiB pages), as
    /// libxenguest's `write_headers` writes them (`xen` is `xc_version`'s major and minor).
    pub fn write_headers(&mut self, guest: GuestType, xen: (u32, u32)) -> Result<(), StreamError> {
        let mut ihdr = Vec::with_capacity(24);
        ihdr.extend_from_slice(&IHDR_MARKER.to_be_bytes());
        ihdr.extend_from_slice(&IHDR_ID.to_be_bytes());
        ihdr.extend_from_slice(&VERSION_WRITTEN.to_be_bytes());
        ihdr.extend_from_slice(&[0u8; 8]); // options (little-endian), reserved
        let mut dhdr = Vec::with_capacity(16);
        dhdr.extend_from_slice(&guest.number().to_le_bytes());
        dhdr.extend_from_slice(&12u16.to_le_bytes());
        dhdr.extend_from_slice(&[0u8; 2]);
        dhdr.extend_from_slice(&xen.0.to_le_bytes());
        dhdr.extend_from_slice(&xen.1.to_le_bytes());
        self.put(&ihdr, "the image header")?;
        self.put(&dhdr, "the domain header")
    }

    /// One record: header, body, zero padding to 8 bytes. A body past [`REC_LENGTH_MAX`]
    /// is refused, as a reader would refuse it.
    /// A PAGE_DATA record's pages go out from the caller's buffer, not through a copy of the
    /// whole body.
    pub fn write_record(&mut self, record: &Record<'_>) -> Result<(), StreamError> {
        match record {
            Record::PageData(p) => self.write_parts(record.rtype(), &[&p.encode_head(), p.data()]),
            _ => self.write_raw(record.rtype(), &record.encode()),
        }
    }

    /// A record from its type and encoded body.
    pub fn write_raw(&mut self, rtype: u32, body: &[u8]) -> Result<(), StreamError> {
        self.write_parts(rtype, &[body])
    }

    /// A record whose body is `parts` back to back.
    fn write_parts(&mut self, rtype: u32, parts: &[&[u8]]) -> Result<(), StreamError> {
        let name = rec::display(rtype);
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let length = u32::try_from(total)
            .ok()
            .filter(|l| *l <= REC_LENGTH_MAX)
            .ok_or_else(|| StreamError::Malformed {
                name: name.clone(),
                at: self.offset,
                why: format!("length {total} exceeds the {REC_LENGTH_MAX}-byte limit"),
            })?;
        let mut hdr = [0u8; 8];
        hdr[..4].copy_from_slice(&rtype.to_le_bytes());
        hdr[4..].copy_from_slice(&length.to_le_bytes());
        self.put(&hdr, &format!("the {name} record"))?;
        for part in parts {
            self.put(part, &format!("the {name} record"))?;
        }
        let pad = u64::from(length).next_multiple_of(REC_ALIGN) - u64::from(length);
        let zeros = [0u8; 8];
        self.put(
            zeros
                .get(..usize::try_from(pad).unwrap_or(0))
                .unwrap_or_default(),
            &format!("the {name} record's padding"),
        )
    }

    /// Flush the writer.
    pub fn flush(&mut self) -> Result<(), StreamError> {
        self.inner.flush().map_err(|e| StreamError::Io {
            what: "flushing the stream".into(),
            at: self.offset,
            source: e,
        })
    }
}
