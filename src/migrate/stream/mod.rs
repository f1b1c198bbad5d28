//! The libxc migration stream, as xen-project/xen `docs/specs/libxc-migration-stream.pandoc`
//! lays it out and `tools/libs/guest/xg_sr_stream_format.h` declares it (at c447b73): version
//! 3 is written, versions 2 and 3 are read, little-endian only (as libxenguest, which refuses
//! big-endian streams).
//!
//! A pure codec: bytes in, typed records out, and back; no hypervisor. The input is
//! untrusted (a restore reads it from the network):
//!
//! * a record's body is read only as far as bytes arrive, so memory follows what was sent,
//!   never what a length field claims (at most [`format::REC_LENGTH_MAX`] per record);
//! * every count and length is checked against its record before it is used;
//! * nothing panics: every malformed input is a [`StreamError`] naming the record, its offset
//!   in the stream and what is wrong.
//!
//! What the records mean for a domain (which pfns are valid, what a parameter does) is the
//! restore engine's business, not the codec's.

pub mod format;
pub mod read;
pub mod write;

#[cfg(test)]
mod tests;

pub use format::{
    CpuidLeaf, DomainHeader, GuestType, HvmParam, MsrEntry, PageData, PageType, Record, TscInfo,
};
pub use read::{RawRecord, StreamReader};
pub use write::StreamWriter;

use std::io;

/// Why a stream could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The stream ended inside something.
    #[error("the stream ended inside {what} at byte {at}")]
    Truncated {
        /// What was being read (`the image header`, `a PAGE_DATA record`).
        what: String,
        /// Offset in the stream where it started.
        at: u64,
    },
    /// Reading or writing failed.
    #[error("{what} at byte {at}: {source}")]
    Io {
        /// What was being read or written.
        what: String,
        /// Offset in the stream.
        at: u64,
        /// The failure.
        source: io::Error,
    },
    /// The image or domain header is not one this reader takes.
    #[error("invalid {header}: {why}")]
    Header {
        /// `image header` or `domain header`.
        header: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A record that breaks the format: its length, a count, a field.
    #[error("{name} record at byte {at}: {why}")]
    Malformed {
        /// The record's name (`PAGE_DATA`, or the type number when unknown).
        name: String,
        /// Offset of its header in the stream.
        at: u64,
        /// What is wrong.
        why: String,
    },
}

impl StreamError {
    /// The errno the C code would leave: EIO for a read or write failure (or the OS's own
    /// code), EINVAL for a malformed stream.
    pub fn code(&self) -> i32 {
        match self {
            StreamError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            StreamError::Truncated { .. } => libc::EIO,
            StreamError::Header { .. } | StreamError::Malformed { .. } => libc::EINVAL,
        }
    }

    /// The error in the build errors' form, at `step` (`xc_domain_restore`, `xc_domain_save`).
    pub fn at(self, step: &'static str) -> crate::Error {
        let code = self.code();
        crate::Step::Mode(step).xc()(crate::hypervisor::XcError::errno_with(
            step,
            code,
            self.to_string(),
        ))
    }
}
