//! The real store: a xenstored reached through `xenstore-rs` (socket from `XENSTORED_PATH`,
//! default `/run/xenstored/socket`, as the C tools do).

use super::{Store, StoreError, StoreResult};
use std::io;
use std::sync::Mutex;
use xenstore_rs::unix::XsUnix;
use xenstore_rs::Xs;

/// A connection to xenstored. `XsUnix` is not `Sync`, so requests are serialised; each build
/// normally opens its own connection.
pub struct XenstoredStore {
    conn: Mutex<XsUnix>,
}

impl std::fmt::Debug for XenstoredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("XenstoredStore")
    }
}

impl XenstoredStore {
    /// Connect (the C xenguest's `xs_open(0)`).
    pub fn open() -> io::Result<Self> {
        Ok(XenstoredStore {
            conn: Mutex::new(XsUnix::new()?),
        })
    }

    fn with<T>(
        &self,
        op: &'static str,
        path: &str,
        f: impl FnOnce(&XsUnix) -> io::Result<T>,
    ) -> StoreResult<T> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&conn).map_err(|e| to_store_error(op, path, &e))
    }
}

fn to_store_error(op: &'static str, path: &str, e: &io::Error) -> StoreError {
    let code = e.raw_os_error().unwrap_or(match e.kind() {
        io::ErrorKind::NotFound => libc::ENOENT,
        io::ErrorKind::PermissionDenied => libc::EACCES,
        io::ErrorKind::WouldBlock => libc::EAGAIN,
        io::ErrorKind::InvalidInput => libc::EINVAL,
        io::ErrorKind::UnexpectedEof => libc::ECONNRESET,
        _ => libc::EIO,
    });
    let text = match e.raw_os_error() {
        Some(errno) => crate::hypervisor::strerror(errno),
        None => e.to_string(),
    };
    // A dead or restarted daemon shows up as EOF, EPIPE or a reset: say so plainly.
    let lost = matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
    );
    StoreError {
        op,
        path: path.to_string(),
        code,
        message: if lost {
            format!("xenstored closed the connection ({text})")
        } else {
            text
        },
    }
}

impl Store for XenstoredStore {
    fn read(&self, path: &str) -> StoreResult<Option<String>> {
        self.with("read", path, |c| match c.read(path) {
            Ok(v) => Ok(Some(v.into())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
    }

    fn write(&self, path: &str, value: &str) -> StoreResult<()> {
        self.with("write", path, |c| c.write(path, value))
    }

    fn directory(&self, path: &str) -> StoreResult<Vec<String>> {
        self.with("directory", path, |c| match c.directory(path) {
            Ok(v) => Ok(v.into_iter().map(String::from).collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        })
    }

    fn rm(&self, path: &str) -> StoreResult<()> {
        self.with("rm", path, |c| match c.rm(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_says_so() {
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "failed to fill whole buffer");
        let e = to_store_error("read", "/local/domain/1/platform/acpi", &eof);
        assert_eq!(e.code, libc::ECONNRESET);
        assert_eq!(
            e.to_string(),
            "xenstore read /local/domain/1/platform/acpi: [104] \
             xenstored closed the connection (failed to fill whole buffer)"
        );
        let epipe = io::Error::from_raw_os_error(libc::EPIPE);
        let e = to_store_error("write", "/a", &epipe);
        assert_eq!(
            (e.code, e.message.as_str()),
            (libc::EPIPE, "xenstored closed the connection (Broken pipe)")
        );
        let eacces = io::Error::from_raw_os_error(libc::EACCES);
        let e = to_store_error("write", "/a", &eacces);
        assert_eq!(
            e.message, "Permission denied",
            "no Rust '(os error N)' suffix"
        );
    }
}
